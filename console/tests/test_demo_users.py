import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from console.roles import ROLES, user_roles

pytestmark = pytest.mark.django_db


def test_it_creates_one_signed_in_person_per_role(settings):
    settings.DEBUG = True
    call_command("demo_users", password="demo-password-1")
    users = get_user_model().objects.filter(is_staff=True)
    assert sorted(role for user in users for role in user_roles(user)) == sorted(ROLES)
    assert get_user_model().objects.get(username="ada").check_password("demo-password-1")


def test_running_it_again_resets_rather_than_duplicates(settings):
    settings.DEBUG = True
    call_command("demo_users", password="first-password")
    call_command("demo_users", password="second-password")
    assert get_user_model().objects.count() == len(ROLES)
    assert get_user_model().objects.get(username="fred").check_password("second-password")


def test_it_refuses_to_run_with_debug_off_unless_forced(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="Demo users are for demos"):
        call_command("demo_users")
    assert not get_user_model().objects.exists()
    call_command("demo_users", force=True)
    assert get_user_model().objects.count() == len(ROLES)
