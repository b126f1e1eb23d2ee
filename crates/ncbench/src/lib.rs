//! ncbench
