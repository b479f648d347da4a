# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_popfetch_global_optspecs
    string join \n c/config= q/quiet v/verbose color= h/help V/version
end

function __fish_popfetch_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_popfetch_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_popfetch_using_subcommand
    set -l cmd (__fish_popfetch_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c popfetch -n "__fish_popfetch_needs_command" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_needs_command" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_needs_command" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_needs_command" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c popfetch -n "__fish_popfetch_needs_command" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "sync" -d 'Fetch new mail for every account, or the named ones'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "watch" -d 'Keep fetching: each account on its own schedule, until stopped'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "check" -d 'Ask whether new mail has arrived; download nothing'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "list" -d 'List the messages on the server: number, size, UIDL, new or seen'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "top" -d 'Peek at messages without downloading them'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "accounts" -d 'Validate the config and print each account\'s resolved settings (never a secret)'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "seen" -d 'Inspect or change the record of which messages were delivered'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "info" -d 'Show what a server offers: greeting, CAPA, TLS version and cipher, certificate chain with SHA-256 fingerprints (for tls_fingerprint). Never logs in'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "init" -d 'Write a commented starter config (mode 0600) for a provider or a host; never overwrites'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "login" -d 'Sign in with OAuth2 and keep the tokens (accounts with `oauth` keys)'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "logout" -d 'Forget the OAuth2 tokens of an account (and of its imap_target)'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "man" -d 'Print the man page (roff)'
complete -c popfetch -n "__fish_popfetch_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -s j -l jobs -d 'Sync up to N accounts at once [default: up to 4]' -r
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -l keep -d 'Leave messages on the server, whatever the account\'s `keep` says'
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -l delete -d 'Delete messages from the server once delivered, whatever `keep` says'
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -l all -d 'Also fetch messages that were delivered before'
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -l dry-run -d 'Connect and print on stdout what would be fetched, deleted and left, one line per message, then a summary; change nothing'
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -l json -d 'Print one JSON object per account on stdout (with --dry-run, the plan as `planned`)'
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -s h -l help -d 'Print help'
complete -c popfetch -n "__fish_popfetch_using_subcommand sync" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand watch" -s j -l jobs -d 'Sync up to N accounts at once [default: up to 4]' -r
complete -c popfetch -n "__fish_popfetch_using_subcommand watch" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand watch" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand watch" -l json -d 'Print one JSON object per event on stdout (`event`: start, sync, reload, reload_failed, idle, stopping, stopped)'
complete -c popfetch -n "__fish_popfetch_using_subcommand watch" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand watch" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c popfetch -n "__fish_popfetch_using_subcommand watch" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand check" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand check" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand check" -l json -d 'Print one JSON object per account on stdout'
complete -c popfetch -n "__fish_popfetch_using_subcommand check" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand check" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c popfetch -n "__fish_popfetch_using_subcommand check" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand list" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand list" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand list" -l json -d 'Print one JSON object per message on stdout'
complete -c popfetch -n "__fish_popfetch_using_subcommand list" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand list" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand list" -s h -l help -d 'Print help'
complete -c popfetch -n "__fish_popfetch_using_subcommand list" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand top" -s n -l lines -d 'With MSG: how many body lines to show after the header block' -r
complete -c popfetch -n "__fish_popfetch_using_subcommand top" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand top" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand top" -l new -d 'Without MSG: only the messages not seen before'
complete -c popfetch -n "__fish_popfetch_using_subcommand top" -l json -d 'Print one JSON object per message on stdout: without MSG `number`, `size`, `uidl`, `date` (Unix seconds or null), `from`, `subject`, `seen`; with MSG `number`, `uidl`, `header` (the header block) and `body` (the first N lines), as text with LF line ends'
complete -c popfetch -n "__fish_popfetch_using_subcommand top" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand top" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand top" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c popfetch -n "__fish_popfetch_using_subcommand top" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand accounts" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand accounts" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand accounts" -l json -d 'Print one JSON object per account'
complete -c popfetch -n "__fish_popfetch_using_subcommand accounts" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand accounts" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand accounts" -s h -l help -d 'Print help'
complete -c popfetch -n "__fish_popfetch_using_subcommand accounts" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -s h -l help -d 'Print help'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -f -a "list" -d 'Print the UIDLs recorded as delivered, with the time of the first delivery'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -f -a "forget" -d 'Forget UIDLs, so the next sync downloads those messages again'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -f -a "mark" -d 'Record everything now on the server as seen, without downloading it'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -f -a "import" -d 'Take over another fetcher\'s record of what was already downloaded'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and not __fish_seen_subcommand_from list forget mark import help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from list" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from list" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON object per record on stdout (`uidl`, `first_seen` in Unix seconds)'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from list" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from forget" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from forget" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from forget" -l all -d 'Forget every record of the account (required off a terminal)'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from forget" -s y -l yes -d 'Do not ask before forgetting everything'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from forget" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from forget" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from forget" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from forget" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from mark" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from mark" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from mark" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from mark" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from mark" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from mark" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from import" -l from -d 'Which fetcher wrote FILE' -r -f -a "fetchmail\t'fetchmail\'s `.fetchids`: `user@host uid` lines'
mpop\t'mpop\'s uidls file: `<count> <host> <user>` headers, then one UID (and in older files a time) per line'
getmail\t'getmail\'s `oldmail-*` file: `uid NUL timestamp` lines'
fdm\t'fdm\'s cache: `<length> <uid>` lines'"
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from import" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from import" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from import" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from import" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from import" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from help" -f -a "list" -d 'Print the UIDLs recorded as delivered, with the time of the first delivery'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from help" -f -a "forget" -d 'Forget UIDLs, so the next sync downloads those messages again'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from help" -f -a "mark" -d 'Record everything now on the server as seen, without downloading it'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from help" -f -a "import" -d 'Take over another fetcher\'s record of what was already downloaded'
complete -c popfetch -n "__fish_popfetch_using_subcommand seen; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c popfetch -n "__fish_popfetch_using_subcommand info" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand info" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand info" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand info" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand info" -s h -l help -d 'Print help'
complete -c popfetch -n "__fish_popfetch_using_subcommand info" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -l provider -d 'A provider preset: gmail, outlook, yahoo, aol, icloud, gmx, webde, fastmail' -r
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -l host -d 'The server (instead of a provider); HOST:PORT sets the port too' -r
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -l protocol -d 'The protocol: pop3 or imap [default: pop3, or imap for a provider without POP3 (icloud)]' -r -f -a "pop3\t''
imap\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -l port -d 'The server\'s port [default: 995, IMAP 993; with --tls starttls or none: 110, IMAP 143]' -r
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -l tls -d 'Transport security [default: implicit, or starttls with --port 110 (IMAP: 143)]' -r -f -a "implicit\t''
starttls\t''
none\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -l user -d 'Your login name (for most providers: your e-mail address)' -r
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -l name -l account -d 'The account\'s section name in the config [default: the provider, or "mail"]' -r
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -l maildir -d 'Where mail goes [default: ~/Mail/NAME]' -r
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -s h -l help -d 'Print help'
complete -c popfetch -n "__fish_popfetch_using_subcommand init" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand login" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand login" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand login" -l device -d 'Sign in on another device (RFC 8628 device grant): for machines without a browser'
complete -c popfetch -n "__fish_popfetch_using_subcommand login" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand login" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand login" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c popfetch -n "__fish_popfetch_using_subcommand login" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand logout" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand logout" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand logout" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand logout" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand logout" -s h -l help -d 'Print help'
complete -c popfetch -n "__fish_popfetch_using_subcommand logout" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand completions" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand completions" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand completions" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand completions" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand completions" -s h -l help -d 'Print help'
complete -c popfetch -n "__fish_popfetch_using_subcommand completions" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand man" -s c -l config -d 'The config file [default: ~/.config/popfetch/config.toml]' -r -F
complete -c popfetch -n "__fish_popfetch_using_subcommand man" -l color -d 'When to colour errors, warnings and new mail: auto (on a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c popfetch -n "__fish_popfetch_using_subcommand man" -s q -l quiet -d 'Print errors only (and warnings that a password or token goes out unencrypted)'
complete -c popfetch -n "__fish_popfetch_using_subcommand man" -s v -l verbose -d 'A line per step and per message delivered (number, size, UIDL, where it went); -vv adds the protocol dialogue with secrets replaced by ***'
complete -c popfetch -n "__fish_popfetch_using_subcommand man" -s h -l help -d 'Print help'
complete -c popfetch -n "__fish_popfetch_using_subcommand man" -s V -l version -d 'Print version'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "sync" -d 'Fetch new mail for every account, or the named ones'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "watch" -d 'Keep fetching: each account on its own schedule, until stopped'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "check" -d 'Ask whether new mail has arrived; download nothing'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "list" -d 'List the messages on the server: number, size, UIDL, new or seen'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "top" -d 'Peek at messages without downloading them'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "accounts" -d 'Validate the config and print each account\'s resolved settings (never a secret)'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "seen" -d 'Inspect or change the record of which messages were delivered'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "info" -d 'Show what a server offers: greeting, CAPA, TLS version and cipher, certificate chain with SHA-256 fingerprints (for tls_fingerprint). Never logs in'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "init" -d 'Write a commented starter config (mode 0600) for a provider or a host; never overwrites'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "login" -d 'Sign in with OAuth2 and keep the tokens (accounts with `oauth` keys)'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "logout" -d 'Forget the OAuth2 tokens of an account (and of its imap_target)'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "man" -d 'Print the man page (roff)'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and not __fish_seen_subcommand_from sync watch check list top accounts seen info init login logout completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and __fish_seen_subcommand_from seen" -f -a "list" -d 'Print the UIDLs recorded as delivered, with the time of the first delivery'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and __fish_seen_subcommand_from seen" -f -a "forget" -d 'Forget UIDLs, so the next sync downloads those messages again'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and __fish_seen_subcommand_from seen" -f -a "mark" -d 'Record everything now on the server as seen, without downloading it'
complete -c popfetch -n "__fish_popfetch_using_subcommand help; and __fish_seen_subcommand_from seen" -f -a "import" -d 'Take over another fetcher\'s record of what was already downloaded'
