"""The README documents the vocabulary exactly as the code defines it."""

from pathlib import Path

from features.vocabulary import markdown_table


def test_readme_vocabulary_table_matches_the_code():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme


def test_every_feature_has_distinct_readable_labels_in_both_languages():
    import re

    from features.spec import FEATURES, PROTECTED_ATTRIBUTES
    from features.vocabulary import EVENT_TYPES

    assert all(e.singular for e in EVENT_TYPES)  # every type says what one of it is
    assert len({f.label_en for f in FEATURES}) == len(FEATURES)
    assert len({f.label_zh for f in FEATURES}) == len(FEATURES)
    assert all(re.search(r"[\u4e00-\u9fff]", f.label_zh) for f in FEATURES)
    assert not {f.name for f in FEATURES} & set(PROTECTED_ATTRIBUTES)
    assert all(f.monotone == 0 for f in FEATURES if f.categorical)


def test_every_sunshine_command_in_the_deployment_guide_exists_with_its_options():
    """`make deploy-check` runs docs/deploy.md against a real PostgreSQL; this keeps the
    guide's commands and options true to the CLI between those runs."""
    import itertools
    import re
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "docs"))
    from conftest import sunshine
    from deploy_check import DOC, blocks

    lines = "\n".join(blocks(DOC.read_text())).replace("\\\n", " ").splitlines()
    script = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    calls = re.findall(r"\bsunshine ([^|>)\n]*)", script)
    assert len(calls) >= 12
    for call in calls:
        words = call.split()
        command = list(itertools.takewhile(lambda w: not w.startswith("-"), words))
        helped = sunshine(Path.cwd(), *command, "--help").stdout
        for option in [w for w in words if w.startswith("--")]:
            assert option in helped, f"sunshine {' '.join(command)} has no {option}"
