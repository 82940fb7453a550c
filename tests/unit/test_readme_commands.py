"""How infra/scripts/readme_commands.py reads the README (the run itself is tests/e2e/test_readme_commands.py)."""

import re

from infra.scripts.readme_commands import commands, mismatch
from tests.support.servers import REPO_ROOT

README = """
<!-- not run: needs AWS -->
```bash
aws deploy
```

```bash
API=http://127.0.0.1:${LOCAL_API_PORT:-5000}   # set once
curl -s $API/health \\
  -H 'X: #not-a-comment'                         # → {"status":"ok" ... "dnd_rag"
python3 -c '
print("# still code")'
```
"""


def test_blocks_marked_not_run_are_skipped_and_commands_span_continuations_and_quotes():
    found = commands(README)

    assert [c.code.split()[0][:4] for c in found] == ["API=", "curl", "pyth"]
    assert found[0].expected is None
    assert found[1].expected == '{"status":"ok" ... "dnd_rag"'
    assert found[2].code.endswith('print("# still code")\'')


def test_fragments_must_appear_in_order_and_about_numbers_stay_within_30_percent():
    assert mismatch('{"status":"ok" ... "dnd_rag"', '{"status":"ok","service":"dnd_rag"}') is None
    assert mismatch('"dnd_rag" ... {"status"', '{"status":"ok","service":"dnd_rag"}') is not None
    assert mismatch("~30 200 ~370 503", "     28 200\n    372 503\n") is None
    assert mismatch("~30 200 ~370 503", "     28 200\n     53 429\n    319 503\n") is not None
    assert mismatch("~30 200", "     12 200\n") is not None


def test_the_readme_runs_every_command_against_its_api_variable_never_a_literal_port():
    found = commands((REPO_ROOT / "README.md").read_text())

    assert found, "the README has no runnable command"
    literal = [c.text for c in found if re.search(r"127\.0\.0\.1:\d", c.code)]
    assert literal == [], "write URLs against $API or ${LOCAL_..._PORT:-...} so a stack on other ports works"
