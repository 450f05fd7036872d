"""CIFAR-10: loading any local copy safely, splits, and mini-batches for Keras.

```python
from sepconv.data import Batches, load_cifar10, make_splits

data = load_cifar10()                      # source, $SEPCONV_DATA, keras cache, download
splits = make_splits(data, train_size=10_000, validation="test", seed=0)
train = Batches(splits.x_train, splits.y_train, augment=True, seed=0)
val = Batches(splits.x_val, splits.y_val, shuffle=False)
```
"""

from sepconv.data._batches import CIFAR10_MEAN, CIFAR10_STD, Batches
from sepconv.data._cifar10 import CIFAR10_CLASSES, Cifar10
from sepconv.data._load import load_cifar10
from sepconv.data._shards import ShardedBatches
from sepconv.data._splits import Splits, make_splits, stratified_subset

__all__ = [
    "Batches",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "Cifar10",
    "ShardedBatches",
    "Splits",
    "load_cifar10",
    "make_splits",
    "stratified_subset",
]
