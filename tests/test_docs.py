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
