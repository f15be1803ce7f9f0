"""One suite per provider category (FastStream-style): every provider's tests subclass the
suite of its category, so all of them are held to the same behaviour by the same asserts."""
