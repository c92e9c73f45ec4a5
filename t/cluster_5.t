#!/usr/bin/perl

# Five nodes, three replicas per partition: a node that holds no copy of a
# topic still serves it completely (forwarding to the leader, and SSE
# relayed from a replica: replay, live events, Last-Event-ID, the final
# event when the topic is deleted), and cluster-wide lists merge the
# partitions of all five nodes.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;
use MOM::Test::Ring;
use MOM::Test::Frame;

my $t = MOM::Test->new(nodes => 5);
$t->start_cluster(20);

# A topic and a node that is not among its replicas.
my ($topic, $outsider, @replicas);
for my $i (1 .. 100) {
    my $name = "news$i";
    my $p = MOM::Test::Ring::partition_of($name, 64);
    @replicas = MOM::Test::Ring::replicas([1 .. 5], $p, 3);
    my %in = map { $_ => 1 } @replicas;
    ($outsider) = grep { !$in{$_} } 1 .. 5;
    $topic = $name, last if $outsider;
}
note("topic $topic: replicas @replicas, outsider $outsider");

my $tok = $t->user_token('alice', node => $outsider);
ok($tok, 'user registered and logged in through a non-replica');
my $r = $t->post('/messages/topics', {name => $topic}, token => $tok,
                 node => $outsider);
is($r->{status}, 200, 'topic created through a non-replica');
for my $i (1 .. 3) {
    $r = $t->post("/messages/messages/topic/$topic", {content => "old$i"},
                  token => $tok, node => $outsider);
    is($r->{json} && $r->{json}{offset}, $i, "published old$i");
}

# Replay then live, relayed by the outsider from a replica.
my $s = $t->sse("/messages/messages/topic/$topic", node => $outsider,
                last_event_id => 1);
is($s->status, 200, 'stream opened on a non-replica');
like($s->header('content-type') // '', qr{^text/event-stream},
     'an event stream');
my @ev = $s->data_events(2, timeout => 10);
is_deeply([map { $_->{id} } @ev], [2, 3], 'replay after Last-Event-ID');
my $t0 = time;
$t->post("/messages/messages/topic/$topic", {content => 'live1'},
         token => $tok, node => $replicas[0]);
@ev = $s->data_events(1, timeout => 10);
is($ev[0] && $ev[0]{json}{content}, 'live1',
   'a message published on a replica reaches the outsider\'s stream');
note(sprintf 'relayed live event after %.1f ms', (time - $t0) * 1000);

# Several subscribers, on replicas and not, at once. (A follower applies
# a commit when the next AppendEntries tells it, up to a heartbeat later:
# streams resume from a known offset rather than "from now".)
my @subs = map { $t->sse("/messages/messages/topic/$topic", node => $_,
                         last_event_id => 4) } 1 .. 5;
is_deeply([map { $_->status } @subs], [(200) x 5],
          'a subscriber on every node');
for my $i (1 .. 10) {
    $t->post("/messages/messages/topic/$topic", {content => "m$i"},
             token => $tok, node => 1 + $i % 5);
}
for my $k (1 .. 5) {
    my @got = $subs[$k - 1]->data_events(10, timeout => 10);
    is_deeply([map { $_->{json}{content} } @got], [map { "m$_" } 1 .. 10],
              "node $k streams all 10 in order");
}
$_->disconnect for @subs;

# The final event of a deleted topic crosses the relay too.
$r = $t->del("/messages/topics/$topic", token => $tok, node => $replicas[1]);
is($r->{status}, 200, 'topic deleted');
my $end;
while (defined(my $b = $s->next_block(timeout => 10))) {
    $end = $b, last if ($b->{event} // '') eq 'end';
}
is_deeply($end && $end->{json}, {reason => 'topic deleted'},
          'the outsider\'s stream ends with "topic deleted"');
ok($s->wait_closed(5), 'and closes');
$s->disconnect;

# A relayed stream the module mutes (OP_MUTE: the subscriber is fed from
# its worker's shared stream) carries no more message events, but still
# its heartbeats and its final event, as a local one does.
my $quiet;
for my $i (1 .. 200) {
    my $p = MOM::Test::Ring::partition_of("quiet$i", 64);
    my %in = map { $_ => 1 } MOM::Test::Ring::replicas([1 .. 5], $p, 3);
    $quiet = "quiet$i", last unless $in{$outsider};
}
is($t->post('/messages/topics', {name => $quiet}, token => $tok,
            node => $outsider)->{status}, 200, "topic $quiet created");
{
    my $c = MOM::Test::Frame->new($t->socket_path($outsider));
    $c->request(op => 'OP_SUBSCRIBE', name => $quiet, heartbeat_ms => 200);
    my $f = $c->response(timeout => 10);
    is($f && $f->{status}, 200, 'relayed subscribe on momd: 200');
    is($t->post("/messages/messages/topic/$quiet", {content => 'q1'},
                token => $tok, node => $replicas[0])->{status}, 200,
       'publish q1');
    my $first;
    while (my $g = $c->response(timeout => 10)) {
        $first = $g, last if ($g->{body} // '') =~ /^id: /;
    }
    like($first && $first->{body}, qr/^id: 1\n/,
         'relayed stream: event 1 before the mute');
    $c->request(op => 'OP_MUTE');
    sleep 0.3;
    for my $i (2 .. 4) {
        $t->post("/messages/messages/topic/$quiet", {content => "q$i"},
                 token => $tok, node => 1 + $i % 5);
    }
    my @bodies = map { $_->{body} // '' } $c->responses_for(1.5);
    ok(!grep({ /^id: / } @bodies),
       'relayed stream: no message event once muted');
    ok(scalar(grep { /^: ping/ } @bodies),
       'relayed stream: heartbeats go on');
    is($t->del("/messages/topics/$quiet", token => $tok,
               node => $replicas[1])->{status}, 200, "topic $quiet deleted");
    my $end = $c->end(timeout => 10);
    like($end && $end->{body}, qr/topic deleted/,
         'relayed stream: a muted stream still gets its final event');
    $c->disconnect;
}

# Errors of a stream's first answer arrive unchanged.
$s = $t->sse("/messages/messages/topic/$topic", node => $outsider);
is($s->status, 404, 'stream of a deleted topic: 404 through the relay');
$s->disconnect;

# Lists merge every node's partitions.
my @names = map { "t$_" } 1 .. 20;
for my $i (0 .. $#names) {
    $t->post('/messages/topics', {name => $names[$i]}, token => $tok,
             node => 1 + $i % 5);
}
for my $k (1 .. 5) {
    is_deeply($t->get('/messages/topics', node => $k)->{json},
              {topics => [sort @names]}, "node $k lists all 20 topics");
}

$t->check_logs;
done_testing();
