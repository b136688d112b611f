import pytest

from helpers.data import load_digits


@pytest.fixture(scope="session")
def digits():
    return load_digits(seed=0)


class Small:
    """A few hundred digits: enough to train a step, small enough to be instant."""

    def __init__(self, data, n=256):
        self.x_train, self.y_train = data.x_train[:n], data.y_train[:n]
        self.x_test, self.y_test = data.x_test[:n], data.y_test[:n]
        self.num_classes, self.image_shape = 10, data.image_shape


@pytest.fixture(scope="session")
def small(digits):
    return Small(digits)
