pub mod invocation;
