#!/usr/bin/perl

# A replica that falls behind while its partitions' logs are compacted
# catches up from the log when what it missed fits in
# its share of snapshot_trailing_bytes (the default, 64 MiB per node: 1 MiB
# per partition): no snapshot is sent, and
# its SSE subscribers' streams go on without a break. The same settings
# with the count alone need a snapshot and end those streams
# (t/cluster_snapshot.t).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;

my $t = MOM::Test->new(nodes => 3,
                       momd_extra => "snapshot_threshold = 16\n"
                                     . "snapshot_trailing = 4\n");
$t->start_cluster;

my $tok = $t->user_token('alice');
is($t->post('/messages/topics', {name => 'live'}, token => $tok)->{status},
   200, 'topic created');
sleep 0.5;
my $sub = $t->sse('/messages/messages/topic/live', node => 3,
                  last_event_id => 0);
is($sub->status, 200, 'subscribed on node 3');

$t->pause_momd(3);
my $ok = 1;
for my $i (1 .. 60) {
    my $r = $t->post('/messages/messages/topic/live', {content => "l$i"},
                     token => $tok, node => 1 + $i % 2);
    $ok = 0, diag("publish $i: $r->{status}"), last unless $r->{status} == 200;
}
ok($ok, '60 messages published while node 3 is stopped');
sleep 2.5;    # past the Raft calls' deadline, as in t/cluster_snapshot.t
$t->resume_momd(3);

my ($seen, $end) = $sub->events_until_end(60);
ok(!$end, 'the stream on node 3 goes on')
    or diag("ended: " . ($end->{data} // ''));
is_deeply([map { $_->{id} } @$seen], [1 .. 60],
          'every message once, in order, from node 3');
$sub->disconnect;

unlike(MOM::Test::read_file_maybe($t->momd_log(3)), qr/installing a snapshot/,
       'node 3 caught up from the log: no snapshot installed');
is(MOM::Test::sqlite($t->db_path(3), "SELECT count(*) FROM topic_messages "
       . "WHERE pos >> 40 = (SELECT id FROM topics WHERE name='live')"),
   "60\n", 'node 3 holds the 60 messages');

$t->check_logs;
done_testing();
