"""The documentation says what the code does: the vocabulary exactly as the code defines it,
the deployment guide's commands and options, and links that lead somewhere."""

from pathlib import Path

from features.contract.vocabulary import markdown_table

ROOT = Path(__file__).parents[1]


def test_the_contract_documents_the_vocabulary_as_the_code_defines_it():
    contract = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    assert markdown_table() in contract


def test_every_relative_link_in_the_documentation_leads_to_a_file():
    import re

    pages = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_every_feature_has_distinct_readable_labels_in_both_languages():
    import re

    from features.contract.vocabulary import EVENT_TYPES
    from features.spec import FEATURES, PROTECTED_ATTRIBUTES

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
