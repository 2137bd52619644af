"""Device profiles shipped with edgec: one YAML file per device in this folder."""

from pathlib import Path

PROFILE_DIR = Path(__file__).parent
