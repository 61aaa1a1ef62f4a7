"""What the exception queue's API shows and accepts. Serializers only translate: every change goes through
exceptions.services, every read through exceptions.selectors.

Money is a decimal string (never a float), times are ISO 8601, and each code (kind, team, status, action) comes
with its label so a client need not keep its own copy of the lists."""

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from exceptions.kinds import KINDS, TEAMS
from exceptions.models import ExceptionEvent, Status, SyncException
from exceptions.selectors import AGE_BUCKETS
from exceptions.services import can_act

BULK_ACTIONS = [("retry", "Retry"), ("resolve", "Resolve"), ("ignore", "Ignore")]
STATUS_FILTERS = ["active", "all", *Status.values]
MAX_BULK_IDS = 10_000


class PersonSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)


class ExceptionSerializer(serializers.ModelSerializer):
    """One exception as the queue lists it."""

    kind_label = serializers.CharField(source="get_kind_display", read_only=True)
    team_label = serializers.CharField(source="get_team_display", read_only=True)
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    value = serializers.DecimalField(
        max_digits=14, decimal_places=3, coerce_to_string=True, allow_null=True, read_only=True
    )
    assignee = PersonSerializer(allow_null=True, read_only=True)
    can_act = serializers.SerializerMethodField(help_text="Whether the requesting user may act on it.")

    class Meta:
        model = SyncException
        fields = [
            "id",
            "flow",
            "kind",
            "kind_label",
            "object_type",
            "object_ref",
            "system",
            "title",
            "team",
            "team_label",
            "assignee",
            "status",
            "status_label",
            "priority",
            "value",
            "currency",
            "attempts",
            "occurrences",
            "first_seen",
            "last_seen",
            "next_retry_at",
            "can_act",
        ]
        read_only_fields = fields

    def get_can_act(self, exception: SyncException) -> bool:
        request = self.context.get("request")
        return bool(request) and can_act(request.user, exception)


class PlaybookSerializer(serializers.Serializer):
    """The kind's plain-English cause, what it costs the business, and the steps to fix it."""

    cause = serializers.CharField(read_only=True)
    impact = serializers.CharField(read_only=True)
    steps = serializers.ListField(child=serializers.CharField(), read_only=True)
    transient = serializers.BooleanField(read_only=True, help_text="Whether it is retried automatically first.")


class MissingMappingSerializer(serializers.Serializer):
    kind = serializers.CharField(source="mapping_kind", read_only=True)
    system = serializers.CharField(source="mapping_system", read_only=True)
    key = serializers.DictField(source="mapping_key", read_only=True)


class EventSerializer(serializers.ModelSerializer):
    """One entry of the timeline: an occurrence, an attempt or an action, with who did it (null: Switchyard)."""

    action_label = serializers.CharField(source="get_action_display", read_only=True)
    actor = PersonSerializer(allow_null=True, read_only=True)

    class Meta:
        model = ExceptionEvent
        fields = ["at", "action", "action_label", "actor", "note", "detail"]
        read_only_fields = fields


class ExceptionDetailSerializer(ExceptionSerializer):
    """One exception in full: the message, the playbook, the request and response, and the timeline."""

    resolved_by = PersonSerializer(allow_null=True, read_only=True)
    refs = serializers.SlugRelatedField(slug_field="ref", many=True, read_only=True)
    playbook = serializers.SerializerMethodField()
    missing_mapping = serializers.SerializerMethodField(
        help_text="For unmapped_* kinds: the mapping whose absence blocks it; creating it retries the exception."
    )
    events = EventSerializer(many=True, read_only=True)

    class Meta(ExceptionSerializer.Meta):
        fields = [
            *ExceptionSerializer.Meta.fields,
            "message",
            "refs",
            "playbook",
            "missing_mapping",
            "payload",
            "response",
            "resolved_at",
            "resolved_by",
            "resolution_note",
            "events",
        ]
        read_only_fields = fields

    @extend_schema_field(PlaybookSerializer)
    def get_playbook(self, exception: SyncException) -> dict:
        return PlaybookSerializer(KINDS[exception.kind]).data

    @extend_schema_field(MissingMappingSerializer(allow_null=True))
    def get_missing_mapping(self, exception: SyncException) -> dict | None:
        return MissingMappingSerializer(exception).data if exception.mapping_kind else None


# many=False: the list answers one page object, not a bare array as the schema would otherwise assume.
@extend_schema_serializer(many=False)
class ExceptionPageSerializer(serializers.Serializer):
    """One page of the queue. ``next`` is the URL of the following page (null on the last); ``count`` is exact up
    to a cap, and ``count_capped`` says the true number is larger."""

    results = ExceptionSerializer(many=True, read_only=True)
    next = serializers.URLField(allow_null=True, read_only=True)
    count = serializers.IntegerField(read_only=True)
    count_capped = serializers.BooleanField(read_only=True)


class NoteSerializer(serializers.Serializer):
    note = serializers.CharField(help_text="How it was fixed, or why it is ignored. Required.")


class AssignSerializer(serializers.Serializer):
    team = serializers.ChoiceField(choices=list(TEAMS.items()), required=False, help_text="Hand it to this team.")
    assignee = serializers.PrimaryKeyRelatedField(
        queryset=get_user_model().objects.filter(is_active=True),
        required=False,
        allow_null=True,
        help_text="The user id of the person to hand it to; null takes it off whoever had it.",
    )

    def validate(self, data: dict) -> dict:
        if not data:
            raise serializers.ValidationError("Give a team, an assignee, or both.")
        return data


class QueueFiltersSerializer(serializers.Serializer):
    """The queue's filters, the same as the list's query parameters. All optional."""

    status = serializers.ChoiceField(choices=STATUS_FILTERS, required=False, help_text="Default: active.")
    # The same (value, label) pairs as the model's fields, so the schema names each set of choices once.
    team = serializers.ChoiceField(choices=list(TEAMS.items()), required=False)
    kind = serializers.ChoiceField(choices=[(code, kind.label) for code, kind in KINDS.items()], required=False)
    flow = serializers.CharField(required=False)
    age = serializers.ChoiceField(choices=list(AGE_BUCKETS), required=False)
    q = serializers.CharField(required=False, help_text="An order number, SKU, tracking number or reference.")
    assignee = serializers.IntegerField(required=False, min_value=1, help_text="A user id.")


class BulkActionSerializer(serializers.Serializer):
    """Act on many exceptions at once: the ones named by ``ids``, or every one matching ``filters``."""

    action = serializers.ChoiceField(choices=BULK_ACTIONS)
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, allow_empty=False, max_length=MAX_BULK_IDS
    )
    filters = QueueFiltersSerializer(required=False)
    note = serializers.CharField(required=False, help_text="Required to resolve or ignore.")

    def validate(self, data: dict) -> dict:
        if ("ids" in data) == ("filters" in data):
            raise serializers.ValidationError("Give either ids or filters.")
        if data["action"] != "retry" and not data.get("note"):
            raise serializers.ValidationError({"note": "Say in a note how they were fixed, or why they are ignored."})
        return data


class BulkResultSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=BULK_ACTIONS, read_only=True)
    matched = serializers.IntegerField(read_only=True, help_text="Open or retrying exceptions in the selection.")
    acted_on = serializers.IntegerField(read_only=True, help_text="How many of those you may act on, and did.")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(read_only=True)
