"""``make sam-local``: SAM's API emulator answers CORS from the template's CorsConfiguration, so it
must be given the local origins as the parameter the configuration reads (CorsOrigins)."""

from pathlib import Path

from infra.local.runtime_image import InvokeImage
from infra.local.sam_local import function_environment, start_api_command

ORIGINS = "http://localhost:3000,http://127.0.0.1:3000"


def overrides(command: list[str]) -> str:
    return command[command.index("--parameter-overrides") + 1]


def test_sam_local_allows_the_origins_the_function_is_given():
    command = start_api_command(Path("t.yaml"), "x86_64", InvokeImage(None, "aws"), Path("e.json"), "3001", ORIGINS)

    assert overrides(command) == f"Architecture=x86_64 CorsOrigins={ORIGINS}"
    assert overrides(start_api_command(Path("t.yaml"), "arm64", InvokeImage(None, "aws"), Path("e.json"), "3001")) == (
        "Architecture=arm64"
    )


def test_the_function_under_sam_local_keeps_the_template_s_cors_by_gateway():
    env = {"CORS_ORIGINS": ORIGINS, "LOCAL_AWS_PORT": "4566", "LOCAL_AUTH_PORT": "8081", "CHROMA_PORT": "8060"}

    variables = function_environment(env, "172.17.0.1")["ApiFunction"]

    assert variables["CORS_ORIGINS"] == ORIGINS
    assert "CORS_BY_GATEWAY" not in variables  # not overridden: sam local gives the template's "true"
