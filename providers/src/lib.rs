//! Sandbox providers behind one small trait.
