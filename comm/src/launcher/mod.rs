//! The launcher's library (`charmrs-run` and `python -m charmrs.run` share it). So far:
//! its command line ([`options`]) and Charm++ nodelist files ([`nodelist`]).

pub mod nodelist;
pub mod options;
