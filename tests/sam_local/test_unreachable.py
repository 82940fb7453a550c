"""A dependency the function cannot reach: an answer in the error shape, long before API Gateway gives up.

``sam local invoke`` runs the same built function and image as the tier's ``sam local start-api``,
with the AWS endpoint moved to a port where nothing listens.
"""

import json
import subprocess
from urllib.parse import urlsplit

import pytest

from infra.local.sam_local import FUNCTION, sam_command
from tests.support.events import http_event
from tests.support.servers import REPO_ROOT, free_port

pytestmark = pytest.mark.sam_local

# HTTP API integrations time out at 30 s (the function's Timeout is 29 s): an answer must come well before.
GATEWAY_TIMEOUT_MS = 29_000


def invoke(state, env_vars, event, tmp_path):
    (tmp_path / "env.json").write_text(json.dumps(env_vars))
    (tmp_path / "event.json").write_text(json.dumps(event))
    command = [
        sam_command(), "local", "invoke", FUNCTION, "--template-file", state["template"],
        "--event", str(tmp_path / "event.json"), "--env-vars", str(tmp_path / "env.json"),
        "--parameter-overrides", f"Architecture={state['arch']}", "--skip-pull-image",
    ]  # fmt: skip
    if state["image_source"] == "local":
        command += ["--invoke-image", state["image"]]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_an_unreachable_store_is_a_quick_503_service_unavailable(sam_url, sam_data_dir, tmp_path):
    # Given the tier's function, its AWS endpoint moved to a port where nothing listens
    state = json.loads((sam_data_dir / "sam-local.json").read_text())
    env_vars = json.loads((sam_data_dir / "sam-env.json").read_text())
    endpoint = urlsplit(env_vars[FUNCTION]["AWS_ENDPOINT_URL"])
    env_vars[FUNCTION]["AWS_ENDPOINT_URL"] = f"http://{endpoint.hostname}:{free_port()}"
    event = http_event("POST", "/api/query", body={"question": "What is a beholder?"}, token="dev-alice")

    # When a query arrives
    response, log = invoke(state, env_vars, event, tmp_path)

    # Then it is refused in the API's error shape (fail closed), with the function's own answer
    body = json.loads(response["body"])
    assert response["statusCode"] == 503, response
    assert body["error"] == "service_unavailable"
    assert body["request_id"]
    assert int(response["headers"]["Retry-After"]) >= 1
    duration_ms = float(log.split("\tDuration: ")[1].split(" ms")[0])
    assert duration_ms < GATEWAY_TIMEOUT_MS / 2, log
