//! Rollouts walked step by step in the simulated cluster of [`world`]. One test binary: the world
//! is compiled and linked once, and the tests of every module run in parallel in it.

mod world;

mod drain;
mod failures;
mod ownership;
mod random_walk;
mod serving;
mod walk;
