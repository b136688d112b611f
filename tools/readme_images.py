"""Make the README's pictures from real runs: `python tools/readme_images.py` writes docs/images/*.png."""

from pathlib import Path

from helpers.data import load_digits
from helpers.models import ModelConfig
from helpers.plots import compare_histories, plot_history
from helpers.train import TrainConfig, train

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"

if __name__ == "__main__":
    data = load_digits()
    deep = ModelConfig(depth=30, width=64, init_scale=1.2)
    runs = {
        "no clipping": TrainConfig(lr=0.05, steps=300),
        "clip_norm = 1": TrainConfig(lr=0.05, steps=300, clip_norm=1.0),
    }
    histories = {name: train(deep.build(data.image_shape), data, config) for name, config in runs.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    title = f"{deep}: SGD, lr 0.05"
    compare_histories(histories, title=title).savefig(OUT / "clipping_compared.png", dpi=80)
    plot_history(histories["clip_norm = 1"], title="the clipped run").savefig(OUT / "dashboard.png", dpi=80)
    for name, h in histories.items():
        print(f"{name}: {h.summary()}")
