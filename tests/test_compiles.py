import jax
import jax.numpy as jnp

from helpers.compiles import CompileCounter


def test_counts_new_programs_only_while_entered():
    x = jnp.arange(3.0)
    with CompileCounter() as compiles:
        jax.jit(lambda v: v * 7.5)(x)
    assert compiles.count == 1, "one new jitted function, one compilation"
    jax.jit(lambda v: v * 9.5)(x)  # after exit: not counted
    assert compiles.count == 1


def test_a_compiled_program_called_again_counts_nothing():
    f = jax.jit(lambda v: v - 1.5)
    x, y, z = jnp.arange(4.0), jnp.ones(4), jnp.ones(5)
    f(x)
    with CompileCounter() as compiles:
        f(y)
    assert compiles.count == 0
    with CompileCounter() as compiles:
        f(z)  # a new shape is a new program
    assert compiles.count == 1
