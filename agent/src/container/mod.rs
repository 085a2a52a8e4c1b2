//! Containers: the security and resource pieces the container init helper applies.
pub mod capabilities;
pub mod cgroups;
pub mod paths;
pub mod rlimits;
pub mod seccomp;
#[cfg(test)]
pub(crate) mod testutil;
