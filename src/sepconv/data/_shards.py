"""`ShardedBatches`: one process's share of every global batch of a `Batches`."""

from sepconv._validation import non_negative_int, positive_int
from sepconv.data._batches import Batches


class ShardedBatches(Batches):
    """The rows `[shard * b, (shard + 1) * b)` of every global batch, `b = len(batch) / shards`.

    The global batches, their order and their augmentation are those of `Batches` with the
    same arguments (`batch_size` is the global batch), so the processes of a multi-process
    run together see exactly what one process would, each image at most once per epoch,
    and no two processes the same image. Every global batch must split evenly over all
    devices (`multiple`, a multiple of `shards`): the last partial batch is cut to a
    multiple of `multiple` images, and left out if that is none; each epoch thus skips at
    most `multiple - 1` images (other ones each epoch when shuffled). With `mixup`, each
    process mixes its share with that share reversed (one weight per global batch), so a
    run on several processes pairs other images than one process would.

    Args:
        x, y: as in `Batches`.
        shard: this process's index, 0 to `shards - 1`.
        shards: the number of processes.
        multiple: the number of devices of all processes; `batch_size` must be a multiple.
        **kwargs: the other arguments of `Batches` (`batch_size` is the global batch).
    """

    def __init__(self, x, y, *, shard=0, shards=1, multiple=1, **kwargs):
        super().__init__(x, y, **kwargs)
        self.shards = positive_int(shards, "shards")
        self.shard = non_negative_int(shard, "shard")
        self.multiple = positive_int(multiple, "multiple")
        if self.shard >= self.shards:
            raise ValueError(f"shard must be less than shards={self.shards}. Received: shard={shard}")
        if self.multiple % self.shards:
            raise ValueError(f"multiple must be a multiple of shards={self.shards}. Received: multiple={multiple}")
        if self.batch_size % self.multiple:
            raise ValueError(
                f"batch_size must be divisible by multiple={self.multiple}. Received: batch_size={self.batch_size}"
            )
        if len(self) == 0:
            raise ValueError(
                f"x must hold at least multiple={self.multiple} images. Received: x.shape={self.x.shape}"
            )

    def __len__(self):
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (rest >= self.multiple)

    @property
    def images_per_epoch(self):
        """Images of all shards together in one epoch (the last batch cut as described above)."""
        return len(self.x) - len(self.x) % self.batch_size % self.multiple

    def _plan(self, index):
        rows, crops, centers, mix, operations = super()._plan(index)  # the global batch, as `Batches` draws it
        share = (len(rows) - len(rows) % self.multiple) // self.shards
        part = slice(self.shard * share, (self.shard + 1) * share)
        crops, centers, operations = (None if draws is None else tuple(d[part] for d in draws)
                                      for draws in (crops, centers, operations))  # fmt: skip
        return rows[part], crops, centers, mix, operations
