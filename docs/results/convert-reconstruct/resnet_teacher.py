"""A small regular-convolution ResNet with BatchNorm, trained briefly: the second conversion input.

    KERAS_BACKEND=tensorflow python resnet_teacher.py --out resnet.keras [--train-size 10000] [--epochs 4]

Stem 3x3 conv (32) - BN - ReLU, then three residual stages (32, 64, 128 channels, strides 1, 2, 2)
of one block each: conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut (a 1x1 conv + BN where the shape
changes), add, ReLU; global average pooling, dense softmax. Adam 1e-3, batch 128, no augmentation
(the tutorial recipe), a stratified subset of the training images, seed 0.
"""

import argparse
import os

import keras

from sepconv.data import Batches, load_cifar10, make_splits


def conv_bn(x, filters, kernel, strides, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def resnet_bn(widths=(32, 64, 128), strides=(1, 2, 2)):
    inputs = keras.Input((32, 32, 3), name="image")
    x = conv_bn(inputs, widths[0], 3, 1, "stem")
    for stage, (filters, stride) in enumerate(zip(widths, strides), start=1):
        shortcut = x
        x = conv_bn(x, filters, 3, stride, f"stage{stage}_a")
        x = conv_bn(x, filters, 3, 1, f"stage{stage}_b", relu=False)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = conv_bn(shortcut, filters, 1, stride, f"stage{stage}_proj", relu=False)
        x = keras.layers.ReLU(name=f"stage{stage}_relu")(keras.layers.Add(name=f"stage{stage}_add")([x, shortcut]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="predictions")(x), name="resnet_bn")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    splits = make_splits(load_cifar10(os.environ["SEPCONV_DATA"]), train_size=args.train_size, seed=0)
    train = Batches(splits.x_train, splits.y_train, batch_size=128, seed=0)
    test = Batches(splits.x_val, splits.y_val, batch_size=256, shuffle=False)
    model = resnet_bn()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, validation_data=test, epochs=args.epochs, shuffle=False, verbose=2)
    model.save(args.out)


if __name__ == "__main__":
    main()
