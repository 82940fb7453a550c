"""Least privilege, proven: the function's policy in template.yaml grants exactly the AWS actions
the Lambda code performed during this integration run (recorded by tests/support/aws_calls.py),
no fewer (the deployed code would be refused) and no more (a grant nothing needs); and its
``dynamodb:LeadingKeys`` conditions allow every item the code wrote, in no partition but those,
and never an update or a delete in the audit trail's (append-only).

The exact-actions test runs last (see conftest.py) and only when the whole integration tier ran,
because a partial run performs only part of the code's calls. The leading-key tests judge whatever
ran, and the policy itself."""

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from dnd_rag.dal.operations.controls import AUDIT_PK
from dnd_rag.dal.operations.reconciliation import RECONCILIATION_PK
from infra.local.template import load_template
from tests.support.aws_calls import RECORDER

INTEGRATION_DIR = Path(__file__).parent
# the services whose permissions the function's own policy statements grant
SERVICES = ("dynamodb", "ses", "sns", "ssm")
ITEM_WRITES = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")


def statements() -> list[dict[str, Any]]:
    function = load_template()["Resources"]["ApiFunction"]["Properties"]
    return [statement for policy in function["Policies"] for statement in policy["Statement"]]


def actions_of(statement: dict[str, Any]) -> set[str]:
    listed = statement["Action"]
    return set([listed] if isinstance(listed, str) else listed)


def granted_actions() -> set[str]:
    granted = set().union(*(actions_of(s) for s in statements() if s["Effect"] == "Allow"))
    return {action for action in granted if action.split(":")[0] in SERVICES}


def _condition_holds(operator: str, values: Any, leading_key: str) -> bool:
    """One condition of a DynamoDB statement, for a request on one item (one leading key)."""
    patterns = [values] if isinstance(values, str) else list(values)
    qualifier, _, test = operator.rpartition(":")
    if test == "Null":  # "false": the key must be present, as it is for every item action
        return patterns == ["false"]
    if test == "StringEquals":
        matches = leading_key in patterns
    elif test == "StringLike":
        matches = any(fnmatchcase(leading_key, pattern) for pattern in patterns)
    else:
        raise AssertionError(f"the policy uses {operator}, which this test cannot evaluate")
    assert qualifier in ("ForAllValues", "ForAnyValue"), f"{operator} on a multivalued key needs a set qualifier"
    return matches  # one item: all values match = any value matches


def allows(action: str, leading_key: str) -> bool:
    """IAM's verdict for ``action`` on an item of partition ``leading_key``: an explicit Deny wins,
    then an Allow is needed."""
    verdicts = []
    for statement in statements():
        if action not in actions_of(statement):
            continue
        conditions = statement.get("Condition", {})
        applies = True
        for operator, keys in conditions.items():
            for key, values in keys.items():
                assert key == "dynamodb:LeadingKeys", f"{key} is not evaluated by this test"
                applies = applies and _condition_holds(operator, values, leading_key)
        if applies:
            verdicts.append(statement["Effect"])
    return "Deny" not in verdicts and "Allow" in verdicts


def whole_tier_ran(session: pytest.Session) -> bool:
    modules = {path.name for path in INTEGRATION_DIR.glob("test_*.py")}
    ran = {item.path.name for item in session.items if item.path.parent == INTEGRATION_DIR}
    return modules <= ran


def test_the_function_can_append_to_the_audit_trail_but_never_change_or_delete_an_entry():
    assert allows("dynamodb:PutItem", AUDIT_PK)
    assert not allows("dynamodb:UpdateItem", AUDIT_PK)
    assert not allows("dynamodb:DeleteItem", AUDIT_PK)
    assert "dynamodb:BatchWriteItem" not in granted_actions()  # a batch could delete without a Deny's say


def test_the_reconciliation_and_the_ingest_line_write_in_their_own_partitions_only():
    # the job's one item a day, and the ingester's embeddings beside the day's budget
    assert allows("dynamodb:PutItem", RECONCILIATION_PK)
    assert allows("dynamodb:UpdateItem", "INGEST#2026-11-22")
    assert allows("dynamodb:PutItem", "INGEST#2026-11-22")
    assert not any(allows(action, "RECONCILIATION#x") for action in ITEM_WRITES)  # the exact partition only
    assert not any(allows(action, "INGEST") for action in ITEM_WRITES)


@pytest.mark.parametrize("leading_key", ["ADMIN", "AUDITX", "audit", "", "SOMETHING#else", "USER"])
def test_writes_outside_the_partitions_the_code_uses_are_refused(leading_key):
    assert not any(allows(action, leading_key) for action in ITEM_WRITES)


def test_every_item_the_code_touched_in_this_run_is_allowed_by_its_leading_key():
    calls = sorted(RECORDER.item_calls)
    if not calls:
        pytest.skip("no DynamoDB call was recorded in this run")

    refused = [(action, key) for action, key in calls if not allows(action, key)]

    assert refused == []
    assert not [key for action, key in calls if key == AUDIT_PK and action in ITEM_WRITES[1:]]


def test_the_policy_grants_exactly_the_actions_the_code_uses(request):
    if not whole_tier_ran(request.session):
        pytest.skip("only meaningful after the whole integration tier (make integration / make test)")
    used = {action for action in RECORDER.actions if action.split(":")[0] in SERVICES}

    assert used, "no AWS call was recorded: the recorder is not hooked into the clients"
    missing = sorted(used - granted_actions())
    unused = sorted(granted_actions() - used)
    assert (missing, unused) == ([], []), (
        f"the code calls {missing}, which template.yaml's policy does not grant; "
        f"template.yaml grants {unused}, which no code path of the integration tier uses"
    )
