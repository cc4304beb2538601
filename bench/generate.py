"""A seeded generator of penguin-like CSV rows at any size, with the embedded data's columns,
per-species distributions and about the same share of missing values.

    python -m bench.generate ROWS OUT.csv [--seed N]
"""

from __future__ import annotations

import argparse

import numpy as np

HEADER = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year"
# species: (islands, bill length, bill depth, flipper length, body mass) means and std devs
SPECIES = {
    "Adelie": (["Torgersen", "Biscoe", "Dream"], (38.8, 2.7), (18.3, 1.2), (190, 6.5), (3700, 460)),
    "Gentoo": (["Biscoe"], (47.5, 3.1), (15.0, 1.0), (217, 6.5), (5076, 504)),
    "Chinstrap": (["Dream"], (48.8, 3.3), (18.4, 1.1), (196, 7.1), (3733, 384)),
}
MISSING_SHARE = 0.01
# Values stay inside the curated schema's ranges, so generated spans pass the data gate.
CLIP = {
    "bill_length_mm": (30, 60),
    "bill_depth_mm": (12, 22),
    "flipper_length_mm": (170, 235),
    "body_mass_g": (2700, 6300),
}


def generate(rows: int, path: str, seed: int = 0, chunk: int = 200_000) -> None:
    """Writes `rows` rows to `path`; memory stays bounded by `chunk`."""
    rng = np.random.default_rng(seed)
    names = list(SPECIES)
    with open(path, "w") as f:
        f.write(HEADER + "\n")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            species = rng.choice(len(names), size=n, p=[0.44, 0.36, 0.20])
            columns = {k: np.empty(n, dtype=object) for k in HEADER.split(",")}
            for i, name in enumerate(names):
                mask = species == i
                m = int(mask.sum())
                islands, bill_l, bill_d, flipper, mass = SPECIES[name]
                columns["species"][mask] = name
                columns["island"][mask] = rng.choice(islands, size=m)
                draws = {
                    column: np.clip(rng.normal(params[0], params[1], m), *CLIP[column])
                    for column, params in (
                        ("bill_length_mm", bill_l),
                        ("bill_depth_mm", bill_d),
                        ("flipper_length_mm", flipper),
                        ("body_mass_g", mass),
                    )
                }
                columns["bill_length_mm"][mask] = np.round(draws["bill_length_mm"], 1).astype(str)
                columns["bill_depth_mm"][mask] = np.round(draws["bill_depth_mm"], 1).astype(str)
                columns["flipper_length_mm"][mask] = (
                    np.round(draws["flipper_length_mm"]).astype(int).astype(str)
                )
                columns["body_mass_g"][mask] = (
                    (np.round(draws["body_mass_g"] / 25) * 25).astype(int).astype(str)
                )
            columns["sex"][:] = rng.choice(["male", "female"], size=n)
            columns["year"][:] = rng.choice(["2007", "2008", "2009"], size=n).astype(object)
            for name in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"):
                columns[name][rng.random(n) < MISSING_SHARE] = "NA"
            lines = [",".join(row) for row in zip(*columns.values())]
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(args.rows, args.out, args.seed)
