#!/usr/bin/perl

# A cancel that reaches momd after its request started (OP_CANCEL: nginx
# tells momd that the request's client gave up): what is under way goes
# on, but the request is never retried. On a node whose partition has no
# reachable leader (the other two momds are down), two multiplexed
# publishes wait in the retry queue; one is cancelled. When the others
# come back and elect a leader, the one not cancelled is applied (the
# control: the same wait would have applied the other) and the cancelled
# one never is.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;
use MOM::Test::Frame;
use MOM::Test::Ring;

my $TOPIC = 'cancelled';
my $t = MOM::Test->new(nodes => 3);
$t->start_cluster;
# A forward to a momd that is down, and momd's restarts, are logged by
# the others.
$t->allow_log(qr/connect\(\) to unix:/);

my $tok = $t->user_token('alice');
is($t->post('/messages/topics', {name => $TOPIC}, token => $tok)->{status},
   200, 'topic created');

# The node that stays up must not lead the topic's partition: its requests
# then wait for a leader in the retry queue.
my $part = MOM::Test::Ring::partition_of($TOPIC, 64);
my $leader = $t->wait_leader($part);
ok($leader, "node $leader leads partition $part");
my ($up) = grep { $_ != $leader } $t->nodes;
my @down = grep { $_ != $up } $t->nodes;
ok($t->kill_momd($_), "momd $_ killed") for @down;

my $c = MOM::Test::Frame->new($t->socket_path($up));
ok($c, "connected to momd $up");
ok($c->pipeline(
       {op => 'OP_PUBLISH', name => $TOPIC, user => 'alice',
        content => '"given-up"', id => 5},
       {op => 'OP_PUBLISH', name => $TOPIC, user => 'alice',
        content => '"waited"', id => 6}),
   'two publishes while no leader is reachable');
sleep 0.5; # both are started: forwarded, failed, queued for a retry
my @early = $c->responses_for(0.1);
is(scalar @early, 0, 'neither is answered yet');
ok($c->pipeline({op => 'OP_CANCEL', id => 5}), 'the first is cancelled');
sleep 0.2;
ok($t->start_momd($_), "momd $_ started again") for @down;

my %got;
my $deadline = time + 15;
while (!$got{6} && time < $deadline) {
    my $r = $c->response(timeout => $deadline - time) or last;
    $got{$r->{id}} = $r;
}
is($got{6} && $got{6}{status}, 200, 'the publish not cancelled: 200');
ok($t->wait_ready(15), 'ready');

my $r = $t->get("/messages/messages/topic/$TOPIC?since=0", token => $tok);
is($r->{status}, 200, 'history read');
my @contents = map { $_->{content} } @{($r->{json} // {})->{messages} // []};
is_deeply([grep { /^(waited|given-up)$/ } @contents], ['waited'],
          'the waited publish is applied, the cancelled one is not');
my $log = MOM::Test::read_file_maybe($t->momd_log($up));
like($log, qr/request 5: its client is gone, not retried/,
     'momd says it gave the cancelled request up');

$t->check_logs;
$t->stop_all;
done_testing;
