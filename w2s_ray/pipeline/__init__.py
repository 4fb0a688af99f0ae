"""The weak-to-strong pipeline: data splits, stages (weak, links, ceiling, students), the stage
cache, bootstrap chains and cross-fitting, and single experiments. Runs without Ray Tune."""
