"""Curated schemas and the penguin data's feature names, in one place."""

import os

SCHEMA_DIR = os.path.dirname(os.path.abspath(__file__))
PENGUIN_SCHEMA = os.path.join(SCHEMA_DIR, "penguin.pbtxt")

LABEL_KEY = "species"
NUMERIC_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL_FEATURES = ["island", "sex"]
