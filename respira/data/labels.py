"""The shared label vocabulary and the mapping of each data set's own labels into it."""

from __future__ import annotations

from collections.abc import Mapping

#: Labels shared across data sets, so they can be combined and a binary task derived (`cough` vs rest).
VOCABULARY: tuple[str, ...] = (
    # vocal and respiratory events
    "cough", "sneeze", "sniff", "laugh", "sigh", "throat_clear", "breathing", "snoring", "crying",
    "speech", "scream", "yawn", "moan", "panting", "nose_blow", "lip_pop", "lip_smack",
    "teeth_chatter", "teeth_grind", "tongue_click",
    # lung sounds (one respiratory cycle each)
    "crackle", "wheeze", "both", "normal",
    # subject status (COVID-19 and respiratory-health sets)
    "covid19", "negative", "healthy", "symptomatic", "unknown",
    "other",
)  # fmt: skip


def normalise_label(label: object) -> str:
    """A label as a vocabulary key: stripped, lowercase, '-' and ' ' -> '_' ("Throat-clearing" -> "throat_clearing")."""
    return str(label).strip().lower().replace("-", "_").replace(" ", "_")


def map_label(source_label: object, mapping: Mapping[str, str]) -> str:
    """`source_label` in the shared vocabulary: `mapping` is keyed by normalised source labels;
    a label it does not list passes through normalised."""
    key = normalise_label(source_label)
    return mapping.get(key, key)
