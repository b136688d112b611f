"""The README's example runs and prints what the README says it prints."""

import re
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_example_prints_what_it_claims(capsys):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    claimed = re.search(r"# (diverged at step \d+ .*?); \.\.\.", code).group(1)
    assert claimed in out
    cause, fix = re.search(r"# (diagnosis: \w+): \.\.\. (fix: .*)", code).groups()
    assert out.splitlines()[1].startswith(cause) and out.splitlines()[-1].strip() == fix, out
