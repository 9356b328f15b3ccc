// placeholder
pub mod blobs;
