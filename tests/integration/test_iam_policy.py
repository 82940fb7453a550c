"""Least privilege, proven: the function's policy in template.yaml grants exactly the AWS actions
the Lambda code performed during this integration run (recorded by tests/support/aws_calls.py),
no fewer (the deployed code would be refused) and no more (a grant nothing needs).

It runs last (see conftest.py) and only when the whole integration tier ran, because a partial
run performs only part of the code's calls."""

from pathlib import Path

import pytest

from infra.local.template import load_template
from tests.support.aws_calls import RECORDER

INTEGRATION_DIR = Path(__file__).parent
# the services whose permissions the function's own policy statements grant
SERVICES = ("dynamodb", "ses", "sns", "ssm")


def granted_actions() -> set[str]:
    function = load_template()["Resources"]["ApiFunction"]["Properties"]
    actions = set()
    for policy in function["Policies"]:
        for statement in policy["Statement"]:
            listed = statement["Action"]
            actions.update([listed] if isinstance(listed, str) else listed)
    return {action for action in actions if action.split(":")[0] in SERVICES}


def whole_tier_ran(session: pytest.Session) -> bool:
    modules = {path.name for path in INTEGRATION_DIR.glob("test_*.py")}
    ran = {item.path.name for item in session.items if item.path.parent == INTEGRATION_DIR}
    return modules <= ran


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
