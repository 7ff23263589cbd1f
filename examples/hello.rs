//! Hello from every PE: a group with one element per PE answers, and the main function
//! prints the answers in PE order.

use charmrs::prelude::*;

/// One element per PE.
pub struct Hello;

#[chare]
impl Hello {
    fn new() -> Self {
        Hello
    }

    /// Returns a greeting from this element's PE.
    fn say_hi(&self, ctx: &Ctx<Self>, from: u32) -> String {
        format!("Hello from PE {} of {} (asked by PE {from})", ctx.my_pe(), ctx.num_pes())
    }
}

fn main() {
    charmrs::start(|_main| async move {
        let group = Group::<Hello>::new(()).await.expect("group created");
        let answers = group.say_hi(charmrs::my_pe().0).ret_all().await.expect("every PE answered");
        for a in &answers {
            println!("{a}");
        }
        println!("{} PEs answered", answers.len());
        let hosts = charmrs::num_hosts();
        let per_host: Vec<String> = (0..hosts).map(|h| charmrs::get_host_pes(h).len().to_string()).collect();
        println!(
            "{hosts} host(s), {} process(es); PEs per host: {}",
            charmrs::num_nodes(),
            per_host.join(" ")
        );
        charmrs::exit(0);
    })
}
