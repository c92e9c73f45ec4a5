#!/usr/bin/perl

# A cluster of three nodes (real nginx, momd, gRPC between the momds): any
# node serves any request; a node that does not lead the partition forwards
# to the leader and relays its answer unchanged (errors too); users, topics
# and queues are the same seen from every node; a read right after an
# acknowledged write includes it on every node; a body as large as nginx
# takes replicates; SSE on any node; a deleted
# topic stays deleted, also after every momd restarted; each partition has
# one leader, named in the nodes' status files.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;
use MOM::Test::Ring;

my $t = MOM::Test->new(nodes => 3);
$t->start_cluster;

# --- leadership ------------------------------------------------------------

# The status files follow role changes within 100 ms.
my %leader;
for my $try (1 .. 30) {
    %leader = ();
    for my $k ($t->nodes) {
        push @{$leader{$_}}, $k for $t->leads($k);
    }
    last if keys %leader == 64 && !grep { @{$leader{$_}} > 1 } keys %leader;
    sleep 0.1;
}
is(scalar(keys %leader), 64, 'status files: every partition is led')
    or diag(explain \%leader);
is(scalar(grep { @{$leader{$_}} > 1 } keys %leader), 0,
   'status files: no partition has two leaders');

# --- users: registered anywhere, log in everywhere -------------------------

my %tok;
for my $u (qw(alice bob carol)) {
    my $node = 1 + keys %tok;
    my $r = $t->post('/auth/register',
                     {username => $u, password => $t->password_for($u)},
                     node => $node);
    is($r->{status}, 200, "register $u through node $node");
    $tok{$u} = 1;
}
for my $u (qw(alice bob carol)) {
    for my $k ($t->nodes) {
        my $r = $t->post('/auth/login',
                         {username => $u, password => $t->password_for($u)},
                         node => $k);
        is($r->{status}, 200, "login $u on node $k");
        $tok{$u} = $r->{json}{token} if $r->{json};
    }
}
my $r = $t->post('/auth/login', {username => 'alice', password => 'wrong'},
                 node => 3);
is($r->{status}, 401, 'bad password: 401 through any node');
for my $k ($t->nodes) {
    $r = $t->post('/auth/register',
                  {username => 'bob', password => 'x' x 10}, node => $k);
    is($r->{status}, 400, "duplicate user on node $k: 400");
    is_deeply($r->{json}, {detail => 'User already exists'}, '... body');
    $r = $t->get('/auth/users', token => $tok{bob}, node => $k);
    is_deeply($r->{json}{users}, [qw(alice bob carol)],
              "users listed on node $k");
}

# --- topics through every node ---------------------------------------------

my @topics = map { "topic$_" } 1 .. 12;
for my $i (0 .. $#topics) {
    my $k = 1 + $i % 3;
    $r = $t->post('/messages/topics', {name => $topics[$i]},
                  token => $tok{alice}, node => $k);
    is($r->{status}, 200, "create $topics[$i] through node $k");
}
for my $k ($t->nodes) {
    is_deeply($t->get('/messages/topics', node => $k)->{json},
              {topics => [sort @topics]}, "node $k lists every topic");
}

# Forwarded errors arrive unchanged, whichever node receives them.
for my $k ($t->nodes) {
    $r = $t->post('/messages/topics', {name => 'topic1'},
                  token => $tok{bob}, node => $k);
    is($r->{status}, 400, "existing topic through node $k: 400");
    is_deeply($r->{json}, {detail => 'Topic already exists'}, '... body');
    $r = $t->del('/messages/topics/topic2', token => $tok{bob}, node => $k);
    is($r->{status}, 403, "not the owner through node $k: 403");
    is_deeply($r->{json}, {detail => 'Not the owner of this topic'},
              '... body');
    $r = $t->del('/messages/topics/nope', token => $tok{bob}, node => $k);
    is($r->{status}, 404, "unknown topic through node $k: 404");
    $r = $t->post('/messages/messages/topic/nope', {content => 1},
                  token => $tok{bob}, node => $k);
    is($r->{status}, 404, "publish to unknown topic through node $k: 404");
    is_deeply($r->{json}, {detail => 'Topic not found'}, '... body');
    $r = $t->get('/messages/messages/topic/nope', node => $k);
    is($r->{status}, 404, "history of unknown topic on node $k: 404");
}

# --- read your writes, on every node ---------------------------------------

my ($fresh, $offset) = (1, 0);
for my $i (1 .. 30) {
    my $w = 1 + $i % 3;
    my $rd = 1 + ($i + 1) % 3;
    $r = $t->post('/messages/messages/topic/topic1', {content => "m$i"},
                  token => $tok{carol}, node => $w);
    $fresh = 0, last unless $r->{status} == 200;
    $offset = $r->{json}{offset};
    my $h = $t->get("/messages/messages/topic/topic1?since="
                    . ($offset - 1), node => $rd)->{json};
    $fresh = 0, diag("offset $offset written on $w, not read on $rd"), last
        unless $h && @{$h->{messages}} && $h->{messages}[0]{content} eq "m$i";
}
ok($fresh, 'a write acknowledged by one node is read by the next at once');
is($offset, 30, 'offsets 1..30');
my @hist = map { $t->get('/messages/messages/topic/topic1?limit=1000',
                         node => $_)->{json} } $t->nodes;
is_deeply($hist[1], $hist[0], 'node 2 has the history of node 1');
is_deeply($hist[2], $hist[0], 'node 3 has the history of node 1');
is_deeply([map { $_->{offset} } @{$hist[0]{messages}}], [1 .. 30],
          'history in order');

# --- the largest body nginx takes, through every node ----------------------

# A publish just under client_max_body_size (1m) makes a Raft batch over
# 1 MiB: each must still replicate and commit (it used to be refused by the
# stream's 1 MiB queue bound, and the client got 503 after 8 s). Two
# topics: one led by node 1, whose batches go on its own streams, and one
# led by node 3, which writes its batches back on the streams nodes 1 and
# 2 opened to it (one connection per member pair).
my %led_by;
for my $k ($t->nodes) {
    $led_by{$_} = $k for $t->leads($k);
}
my %big_topic;
for my $i (1 .. 1000) {
    my $k = $led_by{MOM::Test::Ring::partition_of("big$i", 64)} // 0;
    $big_topic{$k} //= "big$i" if $k == 1 || $k == 3;
    last if keys %big_topic == 2;
}
my $big = 'z' x (1024 * 1024 - 24); # with '{"content":"k..."}': 1m - 9
for my $leader (1, 3) {
    my $topic = $big_topic{$leader};
    ok($topic, "a topic led by node $leader") or next;
    $t->post('/messages/topics', {name => $topic}, token => $tok{carol},
             node => $leader);
    my @offsets;
    for my $k ($t->nodes) {
        $r = $t->post("/messages/messages/topic/$topic",
                      {content => "$k$big"}, token => $tok{carol}, node => $k);
        is($r->{status}, 200, "a 1 MiB publish through node $k, "
                              . "node $leader leading");
        push @offsets, $r->{json} ? $r->{json}{offset} : 0;
    }
    is_deeply(\@offsets, [1, 2, 3], '... offsets 1..3');
    for my $k ($t->nodes) {
        my $rd = 1 + $k % 3;
        my $h = $t->get("/messages/messages/topic/$topic?since=" . ($k - 1)
                        . '&limit=1', node => $rd)->{json};
        ok($h && @{$h->{messages}} && $h->{messages}[0]{content} eq "$k$big",
           "... the one of node $k is read back on node $rd");
    }
    is($t->del("/messages/topics/$topic", token => $tok{carol},
               node => $leader)->{status}, 200, "... $topic deleted");
}

# --- queues: one FIFO across the cluster -----------------------------------

$r = $t->post('/messages/queues', {name => 'jobs'}, token => $tok{alice},
              node => 2);
is($r->{status}, 200, 'queue created through node 2');
is_deeply($t->get('/messages/queues', node => 3)->{json}, {queues => ['jobs']},
          'queue listed on node 3');
for my $i (1 .. 15) {
    $r = $t->post('/messages/messages/queue/jobs', {content => "j$i"},
                  token => $tok{alice}, node => 1 + $i % 3);
    is($r->{status}, 200, "send j$i") unless $r->{status} == 200;
}
my @got;
for my $i (0 .. 20) {
    $r = $t->get('/messages/messages/queue/jobs', token => $tok{bob},
                 node => 1 + $i % 3);
    last unless $r->{status} == 200 && $r->{json}{message};
    push @got, $r->{json}{message}{content};
}
is_deeply(\@got, [map { "j$_" } 1 .. 15],
          'each message received once, in send order, from any node');
is_deeply($t->get('/messages/messages/queue/jobs', token => $tok{bob},
                  node => 3)->{json}, {message => undef}, 'then empty');

# --- SSE on every node -------------------------------------------------------

my @subs = map { $t->sse('/messages/messages/topic/topic3', node => $_) }
           $t->nodes;
is_deeply([map { $_->status } @subs], [200, 200, 200], 'three streams open');
for my $i (1 .. 5) {
    $t->post('/messages/messages/topic/topic3', {content => "e$i"},
             token => $tok{alice}, node => 1 + $i % 3);
}
for my $k ($t->nodes) {
    my @ev = $subs[$k - 1]->data_events(5, timeout => 10);
    is_deeply([map { $_->{json}{content} } @ev], [map { "e$_" } 1 .. 5],
              "node $k streams every message");
}
$_->disconnect for @subs;

# --- a deleted topic stays deleted --------------------------------------------

$r = $t->del('/messages/topics/topic4', token => $tok{alice}, node => 3);
is($r->{status}, 200, 'topic4 deleted through node 3');
for my $k ($t->nodes) {
    ok(!grep({ $_ eq 'topic4' } @{$t->get('/messages/topics', node => $k)
                                      ->{json}{topics}}),
       "topic4 gone from the list of node $k");
    is($t->get('/messages/messages/topic/topic4', node => $k)->{status}, 404,
       "topic4 history 404 on node $k");
}

# --- every momd restarted: everything is still there -----------------------

my $users = $t->get('/auth/users', token => $tok{bob})->{json};
$t->stop_momd($_) for $t->nodes;
ok($t->start_momd($_), "momd $_ restarted") for $t->nodes;
ok($t->wait_ready(15), 'ready again');
for my $k ($t->nodes) {
    is_deeply($t->get('/messages/topics', node => $k)->{json},
              {topics => [sort grep { $_ ne 'topic4' } @topics]},
              "node $k: topics after restart (topic4 still deleted)");
    is_deeply($t->get('/messages/messages/topic/topic1?limit=1000',
                      node => $k)->{json}, $hist[0],
              "node $k: history after restart");
    is_deeply($t->get('/auth/users', token => $tok{bob}, node => $k)->{json},
              $users, "node $k: users after restart");
}

$t->check_logs;
done_testing();
