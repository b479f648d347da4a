//! `popfetch sync` (and check/list/top/info) from IMAP accounts against a
//! real Dovecot IMAP server: byte-exact delivery into a Maildir and an mbox,
//! nothing twice, `--delete`, several folders, `mark_seen`, `move_to`,
//! `fetch = "unseen"`.

use crate::support::dovecot::{require_dovecot_imap, Dovecot};
use crate::support::{expected_delivery, maildir_messages, mixed_messages, Env};

/// An IMAP account of alice on `dc`: implicit TLS on the IMAPS port unless
/// `tls` says otherwise.
fn imap_account(dc: &Dovecot, name: &str, tls: &str, extra: &str) -> String {
    let port = if tls == "implicit" {
        dc.imaps_port()
    } else {
        dc.imap_port()
    };
    format!(
        "[accounts.{name}]\nprotocol = \"imap\"\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\nuser = \"alice\"\npassword = \"pw-alice\"\nca_file = \"{}\"\ntimeout = 20\n{extra}\n",
        dc.pki().ca_path.display()
    )
}

fn sorted_expected<M: AsRef<[u8]>>(datas: &[M]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = datas
        .iter()
        .map(|d| expected_delivery(d.as_ref()))
        .collect();
    v.sort();
    v
}

#[test]
fn imap_maildir_byte_exact_then_nothing_new_then_delete_empties_the_folder() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let datas = mixed_messages(200, 1024 * 1024);
    dc.add_messages("alice", &datas);
    let env = Env::new();
    env.write_config(&imap_account(
        &dc,
        "im",
        "implicit",
        "maildir = \"~/Mail/im\"",
    ));

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 200, "{}", run.stderr);
    // What Dovecot holds, CRLF → LF, is what landed.
    assert_eq!(
        maildir_messages(&env.maildir("im")),
        sorted_expected(&dc.messages("alice"))
    );
    assert_eq!(
        maildir_messages(&env.maildir("im")),
        sorted_expected(&datas)
    );
    assert_eq!(dc.message_count("alice"), 200, "keep leaves them");

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 0);

    let run = env.run(&["sync", "--delete", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["deleted"], 200, "{}", run.stderr);
    assert_eq!(run.json_lines()[0]["new"], 0);
    assert_eq!(dc.message_count("alice"), 0, "folder emptied");
    assert_eq!(maildir_messages(&env.maildir("im")).len(), 200);
}
