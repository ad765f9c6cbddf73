//! [`Helper`]: the directory that forms a group, inside a program (what `tom-helper` runs).

use std::fmt;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::formation::GROUP_DEFAULT;
use crate::registry;
use crate::wire::MEMBERS_MAX;

/// The settings of a [`Helper`]: the group's size and name, and its secret.
///
/// ```
/// let config = tom::HelperConfig::new(3).group("lab-7");
/// config.validate()?;
/// # Ok::<(), tom::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct HelperConfig {
    settings: registry::RegistrySettings,
}

impl HelperConfig {
    /// A helper for a group of `size` members (1 to 128) named `"tom"`, without a secret.
    pub fn new(size: u16) -> HelperConfig {
        HelperConfig {
            settings: registry::RegistrySettings::new(size, GROUP_DEFAULT),
        }
    }

    /// The group's name; members of another group are refused. Default `"tom"`.
    pub fn group(mut self, name: impl Into<String>) -> HelperConfig {
        self.settings.group = name.into();
        self
    }

    /// The group's secret, which every member must prove; without one, members must not have one
    /// either. Default none.
    pub fn secret(mut self, secret: Secret) -> HelperConfig {
        self.settings.secret = Some(secret);
        self
    }

    /// How long a client may take to send its registration once connected. Default 5,000 ms.
    pub fn handshake_timeout_ms(mut self, ms: u64) -> HelperConfig {
        self.settings.handshake_timeout_ms = ms;
        self
    }

    /// Most clients connected that have not registered yet; further ones are closed at once.
    /// Default 64.
    pub fn pending_max(mut self, clients: usize) -> HelperConfig {
        self.settings.pending_max = clients;
        self
    }

    /// Checks every setting; the first that cannot work is an [`Error::InvalidSetting`] naming it.
    /// Called by [`Helper::start`].
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason: String| Err(Error::InvalidSetting { field, reason });
        let settings = &self.settings;
        if settings.size == 0 || settings.size > MEMBERS_MAX {
            return invalid(
                "size",
                format!("{}: a group has 1 to {MEMBERS_MAX} members", settings.size),
            );
        }
        if settings.handshake_timeout_ms == 0 {
            return invalid("handshake_timeout_ms", "0: it must be at least 1".into());
        }
        if settings.pending_max == 0 {
            return invalid("pending_max", "0: it must be at least 1".into());
        }
        Ok(())
    }
}

/// A running helper: it gives the first N members ranks 1..N in arrival order and sends each the
/// roster, then stays, as the directory a restarted member asks where the others listen now. It
/// takes no part in the protocol. Stops on [`Helper::stop`] or drop.
///
/// ```no_run
/// let helper = tom::Helper::start("0.0.0.0:9999", tom::HelperConfig::new(3))?;
/// println!("members join with tom::Config::new(\"THIS_HOST:{}\")", helper.local_addr().port());
/// helper.wait(); // serves until the process ends
/// # Ok::<(), tom::Error>(())
/// ```
pub struct Helper {
    inner: registry::RegistryServer,
    group: String,
    size: u16,
}

impl Helper {
    /// Listens on `addr` (port 0: any free port, see [`Helper::local_addr`]) and serves the group of
    /// `config`.
    pub fn start(addr: impl ToSocketAddrs, config: HelperConfig) -> Result<Helper> {
        config.validate()?;
        Helper::from_listener(TcpListener::bind(addr)?, config)
    }

    /// Serves the group of `config` on a listener the program bound itself.
    pub fn from_listener(listener: TcpListener, config: HelperConfig) -> Result<Helper> {
        config.validate()?;
        let group = config.settings.group.clone();
        let size = config.settings.size;
        let inner = registry::RegistryServer::start(listener, config.settings)?;
        Ok(Helper { inner, group, size })
    }

    /// The address the helper listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    /// How many members have registered so far (at most the group's size).
    pub fn registered(&self) -> usize {
        self.inner.members().len()
    }

    /// Stops accepting, releases members waiting for the group to form, and waits for the helper's
    /// thread. A formed group goes on without its helper (only a restarted member needs it, and it
    /// can ask a live member instead).
    pub fn stop(self) {
        self.inner.stop();
    }

    /// Blocks while the helper serves, which is until the process ends.
    pub fn wait(self) {
        self.inner.wait();
    }
}

impl fmt::Debug for Helper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Helper")
            .field("group", &self.group)
            .field("size", &self.size)
            .field("local_addr", &self.local_addr())
            .field("registered", &self.registered())
            .finish()
    }
}
