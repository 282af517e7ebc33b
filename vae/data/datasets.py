"""What each dataset is: its four files, their official checksums and mirrors."""

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    mirror_folder: str  # subfolder of a VAE_DATA_MIRROR holding the .gz files
    urls: tuple[str, ...]  # official mirrors, tried in order
    md5: dict[str, str]  # uncompressed file name -> MD5 of its content
    classes: tuple[str, ...]


IMAGE_SHAPE = (28, 28)  # both datasets: 28 x 28 grey levels, one byte each
FOLDER = "folder"  # dataset_name of a folder of the user's images (vae.data.folder), beside the IDX datasets
UNDECODABLE = ("refuse", "skip")  # what the split stage does with a file it cannot decode: stop, or leave it out
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS = {
    "MNIST": DatasetSpec(
        name="MNIST",
        mirror_folder="mnist",
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        md5=dict(zip(FILES, ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                             "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"))),
        classes=tuple(str(d) for d in range(10)),
    ),
    "FashionMNIST": DatasetSpec(
        name="FashionMNIST",
        mirror_folder="fashion-mnist",
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5=dict(zip(FILES, ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                             "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"))),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}
