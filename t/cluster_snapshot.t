#!/usr/bin/perl

# A node that was down while its partitions' logs were compacted catches up
# from a snapshot (InstallSnapshot of the partition's state), then from the
# log; its own copy (SQLite, and the SSE replay a replica serves from it)
# holds everything: messages, a deleted topic gone, users, queue state.
# Small snapshot settings make the leaders compact after a few entries.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;

# snapshot_trailing_bytes = 0: the count alone (4 entries) is what the log
# keeps, so a node that missed more needs a snapshot (t/cluster_lagging.t
# has the default).
my $t = MOM::Test->new(nodes => 3,
                       momd_extra => "snapshot_threshold = 16\n"
                                     . "snapshot_trailing = 4\n"
                                     . "snapshot_trailing_bytes = 0\n");
$t->start_cluster;
$t->allow_log(qr/connect\(\) to unix:/);

my $tok = $t->user_token('alice');
is($t->post('/messages/topics', {name => 'snap'}, token => $tok)->{status},
   200, 'topic created');
is($t->post('/messages/topics', {name => 'gone'}, token => $tok)->{status},
   200, 'a topic to delete later');
is($t->post('/messages/queues', {name => 'q'}, token => $tok)->{status},
   200, 'queue created');

$t->kill_nginx(3);
$t->kill_momd(3);
my $ok = 1;
for my $i (1 .. 120) {
    my $r = $t->post('/messages/messages/topic/snap', {content => "s$i"},
                     token => $tok, node => 1 + $i % 2);
    $ok = 0, diag("publish $i: $r->{status}"), last unless $r->{status} == 200;
}
ok($ok, '120 messages published while node 3 is down');
for my $i (1 .. 40) {
    $t->post('/messages/messages/queue/q', {content => "q$i"}, token => $tok,
             node => 1);
}
for (1 .. 25) {
    $t->get('/messages/messages/queue/q', token => $tok, node => 2);
}
is($t->del('/messages/topics/gone', token => $tok, node => 2)->{status}, 200,
   'topic deleted while node 3 is down');
ok($t->user_token('bob', node => 1), 'user registered while node 3 is down');

ok($t->start_momd(3) && $t->start_nginx(3), 'node 3 back');
my $installed;
my $deadline = time + 20;
while (time < $deadline && !$installed) {
    $installed = MOM::Test::read_file_maybe($t->momd_log(3))
            =~ /installing a snapshot/
        && MOM::Test::sqlite($t->db_path(3),
               "SELECT count(*) FROM topic_messages "
               . "WHERE pos >> 40 = (SELECT id FROM topics WHERE name='snap')")
           =~ /^120$/m;
    sleep 0.2 unless $installed;
}
ok($installed, 'node 3 installed snapshots and holds the 120 messages');

my $db = $t->db_path(3);
# Other partitions catch up on their own schedule.
sub eventually {
    my ($sql, $want) = @_;
    my ($got, $deadline) = ('', time + 10);
    while (time < $deadline) {
        $got = MOM::Test::sqlite($db, $sql);
        last if $got eq $want;
        sleep 0.1;
    }
    return $got;
}
is(eventually("SELECT count(*) FROM topics WHERE name='gone'", "0\n"), "0\n",
   'the deleted topic is gone from node 3');
is(eventually("SELECT count(*) FROM queue_messages WHERE pos >> 40 = "
              . "(SELECT id FROM queues WHERE name='q')", "15\n"),
   "15\n", 'node 3 holds the 15 queue messages not yet received');
is(eventually("SELECT name FROM users ORDER BY name", "alice\nbob\n"),
   "alice\nbob\n", 'node 3 knows both users');

# A subscriber on node 3 (a replica) replays from node 3's own copy.
my $s = $t->sse('/messages/messages/topic/snap', node => 3,
                last_event_id => 0);
my @ev = $s->data_events(120, timeout => 10);
is_deeply([map { $_->{json}{content} } @ev], [map { "s$_" } 1 .. 120],
          'node 3 replays all 120 messages from its copy');
$s->disconnect;

# And it goes on with new entries from the log.
$t->post('/messages/messages/topic/snap', {content => 'after'},
         token => $tok, node => 3);
$deadline = time + 5;
my $n;
while (time < $deadline) {
    $n = MOM::Test::sqlite($db, "SELECT count(*) FROM topic_messages "
        . "WHERE pos >> 40 = (SELECT id FROM topics WHERE name='snap')");
    last if $n eq "121\n";
    sleep 0.1;
}
is($n, "121\n", 'node 3 follows the log after the snapshot');

# A replica with live subscribers that falls behind and installs a snapshot
# ends their streams (they missed what the snapshot holds) and they resume
# without a gap.
is($t->post('/messages/topics', {name => 'live'}, token => $tok)->{status},
   200, 'topic live created');
sleep 0.5;
my $sub = $t->sse('/messages/messages/topic/live', node => 3,
                  last_event_id => 0);
is($sub->status, 200, 'subscribed on node 3');
$t->pause_momd(3);
for my $i (1 .. 60) {
    $t->post('/messages/messages/topic/live', {content => "l$i"},
             token => $tok, node => 1 + $i % 2);
}
sleep 2.5;    # past the Raft calls' deadline: the leaders give up on it
$t->resume_momd(3);
my ($seen, $end) = $sub->events_until_end(60);
my @seen = @$seen;
is($end && $end->{json} && $end->{json}{reason}, 'subscriber too slow',
   'the stream ends after the snapshot install');
$sub->disconnect;
my $last = @seen ? $seen[-1]{id} : 0;
$sub = $t->sse('/messages/messages/topic/live', node => 3,
               last_event_id => $last);
my @rest = $sub->data_events(60 - $last, timeout => 10);
is_deeply([map { $_->{id} } @seen, @rest], [1 .. 60],
          'resumed with Last-Event-ID: every message once, in order');
$sub->disconnect;

$t->check_logs;
done_testing();
