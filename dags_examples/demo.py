"""`make demo`: retrain and ship the example classifier to a local control plane.

1. start a local control plane in a temporary directory;
2. train a good model, build its Bento, ship it (push, deploy, wait, quality-gate smoke test);
3. train a deliberately bad model and ship it: the smoke test fails and it is rolled back;
4. print which revision serves and why, then stop everything it started.

Pass ``--keep`` to keep the temporary directory (state, logs) for a look afterwards.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "example_bento"
DEPLOYMENT = "example-classifier"


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bentoship-demo-"))
    os.environ["BENTOML_HOME"] = str(workdir / "bentoml")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    sys.path.insert(0, str(PROJECT))

    import train

    from bentoship import Client, SmokeTestFailed
    from bentoship.server import LocalControlPlane
    from bentoship.steps import SmokeTest, build, ship

    X_holdout, y_holdout = train.holdout()

    def accuracy_gate(predictions: list[int]) -> bool:
        correct = sum(int(p == t) for p, t in zip(predictions, y_holdout, strict=True))
        accuracy = correct / len(predictions)
        print(f"    smoke test: holdout accuracy {accuracy:.2f} (gate {train.QUALITY_THRESHOLD})")
        return accuracy >= train.QUALITY_THRESHOLD

    quality_gate = SmokeTest(
        api="predict", payload={"features": X_holdout.tolist()}, check=accuracy_gate
    )

    def retrain_and_ship(bad: bool) -> tuple[str, str]:
        X, y = train.generate_data()
        model = train.train_model(X, y, bad=bad)
        model_tag = train.save_model(model)
        bento = build(PROJECT, labels={"model": model_tag, "demo": "bad" if bad else "good"})
        print(f"    built {bento} with model {model_tag}")
        try:
            ship(DEPLOYMENT, bento, {"min_replicas": 1}, smoke=quality_gate, client=client)
        except SmokeTestFailed as exc:
            return bento, f"rolled back: {exc}"
        return bento, "shipped"

    print(f"bentoship demo in {workdir}")
    with LocalControlPlane(workdir / "plane", readiness_timeout=90) as plane:
        print(f"  local control plane at {plane.endpoint}")
        client = Client.from_env(home=plane.data_dir)
        print("  1. retrain a good model and ship it")
        good, good_outcome = retrain_and_ship(bad=False)
        print(f"    -> {good_outcome}")
        print("  2. retrain a deliberately bad model and ship it")
        bad, bad_outcome = retrain_and_ship(bad=True)
        print(f"    -> {bad_outcome}")

        dep = client.get_deployment(DEPLOYMENT)
        print("\nsummary")
        for revision in client.list_revisions(DEPLOYMENT):
            marker = "serving" if revision.serving else revision.phase
            print(f"  {revision.name:4} {revision.bento:40} {marker}")
        print(f"  {DEPLOYMENT} is {dep.status} at {dep.url}, serving {dep.bento}")
        ok = (
            good_outcome == "shipped"
            and bad_outcome.startswith("rolled back")
            and dep.bento == good
        )
        why = "the bad model failed its quality gate" if bad != good else ""
        print(f"  the good model serves; {why}" if ok else "  unexpected outcome")
        client.close()
    if "--keep" not in sys.argv:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
