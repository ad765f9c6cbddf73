//! A whole group in one process: a helper and three members on 127.0.0.1, each multicasting a few
//! messages at once; every member prints the order it delivered them in, and they agree.
//!
//! Run it with `cargo run --example three_members`.

use std::time::Duration;

use tom::{Config, Event, Helper, HelperConfig, Member};

const MEMBERS: u16 = 3;
const MESSAGES_PER_MEMBER: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The helper hands out ranks 1..=3 and the roster; port 0 lets the system pick a free port.
    let helper = Helper::start("127.0.0.1:0", HelperConfig::new(MEMBERS).group("example"))?;
    let config = Config::new(helper.local_addr())
        .group("example")
        .bind_host("127.0.0.1")
        .first_port(0);

    let members: Vec<Member> = std::thread::scope(|scope| {
        let joining: Vec<_> = (0..MEMBERS)
            .map(|_| {
                let config = config.clone();
                // Formation waits for all three, so the members join on threads of their own.
                scope.spawn(move || Member::join(config))
            })
            .collect();
        joining
            .into_iter()
            .map(|j| j.join().expect("joining thread"))
            .collect::<Result<_, _>>()
    })?;

    for member in &members {
        for k in 1..=MESSAGES_PER_MEMBER {
            member.multicast(format!("message {k} from rank {}", member.rank()).into_bytes())?;
        }
    }

    let total = MEMBERS as usize * MESSAGES_PER_MEMBER;
    let mut sequences = Vec::new();
    for member in &members {
        let mut delivered = Vec::new();
        while delivered.len() < total {
            match member.events().recv_timeout(Duration::from_secs(10))? {
                Event::Deliver(d) => delivered.push(String::from_utf8_lossy(d.payload.as_bytes()).into_owned()),
                Event::View(view) => println!("rank {}: view {view}", member.rank()),
                _ => {}
            }
        }
        println!("rank {} delivered: {delivered:?}", member.rank());
        sequences.push(delivered);
    }
    let agree = sequences.windows(2).all(|pair| pair[0] == pair[1]);
    println!(
        "{}",
        if agree {
            "all members agree on one order"
        } else {
            "MEMBERS DISAGREE"
        }
    );

    for member in members {
        member.leave(Duration::from_secs(10))?;
    }
    helper.stop();
    if agree {
        Ok(())
    } else {
        Err("members disagree".into())
    }
}
