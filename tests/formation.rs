//! Formation through the library, on 127.0.0.1: an in-process helper on port 0 and N members as threads
//! sharing one first port. Each formed group must have ranks 1..N, identical rosters, and N live
//! connections per member, the one to itself included.

mod net_support;

use net_support::{check_mesh, form_group, start_helper};
use tom::error::Error;
use tom::formation::{self, FormationConfig};

fn forms(size: u16) {
    let helper = start_helper(size, "tom");
    let group = form_group(helper.local_addr(), size);
    check_mesh(&group);
    assert_eq!(helper.members().len(), usize::from(size));
    helper.stop();
}

#[test]
fn one_member_forms_alone_with_its_self_connection() {
    forms(1);
}

#[test]
fn two_members_form() {
    forms(2);
}

#[test]
fn three_members_form() {
    forms(3);
}

#[test]
fn five_members_form() {
    forms(5);
}

#[test]
fn eight_members_form() {
    forms(8);
}

#[test]
fn unreachable_helper_is_an_error_naming_its_address() {
    // A port nobody listens on: bound, then released.
    let port = net_support::free_port();
    let mut config = FormationConfig::new(format!("127.0.0.1:{port}"));
    config.bind_host = "127.0.0.1".into();
    config.first_port = 0;
    config.connect_attempts = 2;
    config.connect_retry_interval_ms = 50;
    match formation::form(&config) {
        Err(error @ Error::HelperUnreachable { .. }) => {
            assert!(error.to_string().contains(&format!("127.0.0.1:{port}")));
        }
        other => panic!("expected HelperUnreachable, got {other:?}"),
    }
}

#[test]
fn exhausted_port_span_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut config = FormationConfig::new("127.0.0.1:9");
    config.bind_host = "127.0.0.1".into();
    config.first_port = port;
    config.port_span = 1;
    match formation::form(&config) {
        Err(Error::PortsExhausted { first, span }) => assert_eq!((first, span), (port, 1)),
        other => panic!("expected PortsExhausted, got {other:?}"),
    }
}
