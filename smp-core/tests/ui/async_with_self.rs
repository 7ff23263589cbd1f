use charmrs::prelude::*;

pub struct W;

#[chare]
impl W {
    fn new() -> Self {
        W
    }
    async fn wait(&mut self) {}
}

fn main() {}
