"""The quality suite: six small multimodal datasets that mumo's own generator did not make, strong
simple baselines on each, and default mumo, in one table. It decides which defaults to keep.

    python -m benchmarks.quality [--datasets a,b] [--seed 0] [--set key=value ...] [--skip-mumo]
        [--skip-baselines] [--json PATH] [--markdown PATH]

| dataset | inputs → target | what it tests |
|---|---|---|
| digits-speech | noisy 32x32 scan of a real handwritten digit + the same digit spoken (espeak-ng, babble / white noise) → d0..d9 | redundant inputs: fusing two noisy views |
| digits-sum | scan of digit a + spoken digit b → (a + b) mod 10 | an interaction: each input alone is at chance |
| relational-match | two-object scene + caption → yes / no (near misses change one colour, shape or relation) | grounding words in an image |
| relational-qa | two-object scene + question → colour / shape / yes / no / left / right / above / below | question-conditioned reading of an image |
| digits-regression | scan of digit t + spoken digit u → 10t + u | regression from two inputs |
| digits-table | the 64 digit pixels as numbers with noise and 20% empty cells → d0..d9 | a real table with missing values |

Datasets are generated from a seed, byte for byte the same each time, into
$MUMO_CACHE/quality/<name>-seed<seed>/ (written to a temp folder, then renamed) and reused from there.
"""
