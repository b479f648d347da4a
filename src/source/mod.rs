//! Where mail comes from: the POP3 and POP2 clients, and `connect`, which
//! turns an account into a logged-in POP3 session.

pub mod connect;
pub mod imap;
pub mod pop2;
pub mod pop3;
