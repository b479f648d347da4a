//! The providers popfetch knows by name: their endpoints, the scope that
//! opens POP3 and IMAP, and what else their authorization URL needs.
//! popfetch ships no client id or secret: the user registers their own.

/// `oauth = "google" | "microsoft"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Google,
    Microsoft,
}

impl Provider {
    pub const ALL: [(&'static str, Provider); 2] = [
        ("google", Provider::Google),
        ("microsoft", Provider::Microsoft),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::Microsoft => "microsoft",
        }
    }

    pub fn auth_url(self) -> &'static str {
        match self {
            Provider::Google => "https://accounts.google.com/o/oauth2/v2/auth",
            Provider::Microsoft => "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        }
    }

    pub fn token_url(self) -> &'static str {
        match self {
            Provider::Google => "https://oauth2.googleapis.com/token",
            Provider::Microsoft => "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        }
    }

    pub fn device_url(self) -> &'static str {
        match self {
            Provider::Google => "https://oauth2.googleapis.com/device/code",
            Provider::Microsoft => {
                "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"
            }
        }
    }

    /// The scopes for POP3 and IMAP. Microsoft hands out a refresh token
    /// only with `offline_access`.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Provider::Google => &["https://mail.google.com/"],
            Provider::Microsoft => &[
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/POP.AccessAsUser.All",
                "offline_access",
            ],
        }
    }

    /// Extra parameters of the authorization URL: Google gives a refresh
    /// token only with `access_type=offline`, and again on a second login
    /// only with `prompt=consent`.
    pub fn auth_params(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Provider::Google => &[("access_type", "offline"), ("prompt", "consent")],
            Provider::Microsoft => &[],
        }
    }
}
