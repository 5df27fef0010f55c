//! Unit and property tests of the mask catalogue.
