//! Reading spec files.
