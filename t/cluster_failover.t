#!/usr/bin/perl

# Failures of a three-node cluster with real processes, under a steady
# stream of publishes, queue sends and receives through the other nodes:
#
# - kill -9 of the node that leads the topic's partition: writes resume
#   within a few seconds; no acknowledged message is lost; offsets strictly
#   increase with no duplicate; no queue message is delivered twice; the
#   killed node restarts, catches up and then every node returns the same
#   history. No request waits more than the routing deadline.
# - a node cut off (SIGSTOP of its momd): requests to it do not succeed
#   while it is stopped, and what it was sent meanwhile never shows up;
#   the others go on; once resumed it converges.
# - kill -9 of every momd at once: everything acknowledged is still there.

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
# Killed and stopped nodes make the others log failed connections.
$t->allow_log(qr/connect\(\) to unix:/);

my $tok = $t->user_token('alice');
my $TOPIC = 'stream';
my $QUEUE = 'work';
is($t->post('/messages/topics', {name => $TOPIC}, token => $tok)->{status},
   200, 'topic created');
is($t->post('/messages/queues', {name => $QUEUE}, token => $tok)->{status},
   200, 'queue created');
my $part = MOM::Test::Ring::partition_of($TOPIC, 64);

sub leader_of_topic { $t->wait_leader($part) }

# --- load generators -----------------------------------------------------------

my $dir = $t->dir;
my $stop = "$dir/stop-load";

# A child that loops until $stop exists, logging "time status latency
# what" per request, what being the acknowledged offset/id/content.
sub load {
    my ($name, $nodes, $code) = @_;
    return $t->spawn(sub {
        open my $log, '>', "$dir/$name.log" or die "$name.log: $!";
        $log->autoflush(1);
        my $i = 0;
        until (-e $stop) {
            $i++;
            my $node = $nodes->[$i % @$nodes];
            my $t0 = time;
            my ($status, $what) = $code->($i, $node);
            printf $log "%.3f %d %.3f %s %s\n", $t0, $status, time - $t0,
                $node, $what // '-';
            sleep 0.05 if $status != 200;
        }
        close $log;
    });
}

sub start_load {
    my (@nodes) = @_;
    unlink $stop;
    my $run = int(time * 1000) % 100000;
    my @pids;
    for my $w (qw(a b)) {
        push @pids, load("pub-$w-$run", \@nodes, sub {
            my ($i, $node) = @_;
            my $c = "$w$run-$i";
            my $r = $t->post("/messages/messages/topic/$TOPIC",
                             {content => $c}, token => $tok, node => $node,
                             timeout => 10);
            return ($r->{status},
                    $r->{status} == 200 ? "$r->{json}{offset}=$c" : $c);
        });
    }
    push @pids, load("send-$run", \@nodes, sub {
        my ($i, $node) = @_;
        my $c = "q$run-$i";
        my $r = $t->post("/messages/messages/queue/$QUEUE", {content => $c},
                         token => $tok, node => $node, timeout => 10);
        return ($r->{status}, $c);
    });
    push @pids, load("recv-$run", \@nodes, sub {
        my ($i, $node) = @_;
        my $r = $t->get("/messages/messages/queue/$QUEUE", token => $tok,
                        node => $node, timeout => 10);
        my $m = $r->{status} == 200 && $r->{json} ? $r->{json}{message}
                                                   : undef;
        sleep 0.02 if $r->{status} == 200 && !$m;
        return ($r->{status}, $m ? $m->{content} : '-');
    });
    return ($run, @pids);
}

sub stop_load {
    my (@pids) = @_;
    open my $fh, '>', $stop or die;
    close $fh;
    my @rc = $t->wait_children(30, @pids);
    is_deeply(\@rc, [(0) x @pids], 'load generators ended cleanly');
}

sub read_log {
    my ($file) = @_;
    my @rows;
    open my $fh, '<', "$dir/$file" or return ();
    while (<$fh>) {
        chomp;
        my ($time, $status, $lat, $node, $what) = split / /, $_, 5;
        push @rows, {time => $time, status => $status, latency => $lat,
                     node => $node, what => $what};
    }
    return @rows;
}

# Acknowledged publishes (content => offset) of a run, and every content
# that was attempted.
my (%acked, %attempted, %sent_ok, %received, $received_twice,
    @failed_receives);

sub collect {
    my ($run) = @_;
    my ($max_lat, @times) = (0);
    for my $w (qw(a b)) {
        for my $row (read_log("pub-$w-$run.log")) {
            $max_lat = $row->{latency} if $row->{latency} > $max_lat;
            if ($row->{status} == 200) {
                my ($off, $c) = split /=/, $row->{what}, 2;
                $acked{$c} = $off;
                push @times, $row->{time} + $row->{latency};
            } else {
                $attempted{$row->{what}} = 1;
            }
        }
    }
    for my $row (read_log("send-$run.log")) {
        $sent_ok{$row->{what}} = 1 if $row->{status} == 200;
        $max_lat = $row->{latency} if $row->{latency} > $max_lat;
    }
    for my $row (read_log("recv-$run.log")) {
        $max_lat = $row->{latency} if $row->{latency} > $max_lat;
        push @failed_receives, $row if $row->{status} != 200;
        next unless $row->{status} == 200 && $row->{what} ne '-';
        $received_twice++ if $received{$row->{what}}++;
    }
    return ($max_lat, sort { $a <=> $b } @times);
}

# The longest time without an acknowledged publish.
sub max_gap {
    my (@times) = @_;
    my ($gap, $at) = (0, 0);
    for my $i (1 .. $#times) {
        ($gap, $at) = ($times[$i] - $times[$i - 1], $times[$i - 1])
            if $times[$i] - $times[$i - 1] > $gap;
    }
    return ($gap, $at);
}

sub history {
    my ($node) = @_;
    my @all;
    my $since = 0;
    while (1) {
        my $r = $t->get("/messages/messages/topic/$TOPIC?limit=1000"
                        . "&since=$since", node => $node, timeout => 10);
        return undef unless $r->{status} == 200;
        my @m = @{$r->{json}{messages}};
        last unless @m;
        push @all, @m;
        $since = $m[-1]{offset};
    }
    return \@all;
}

sub check_history {
    my ($when) = @_;
    my $h = history(1);
    ok($h, "$when: history readable");
    my @off = map { $_->{offset} } @$h;
    is_deeply(\@off, [1 .. scalar @off], "$when: offsets 1..N, no gap");
    my %seen;
    my @dup = grep { $seen{$_->{content}}++ } @$h;
    is(scalar @dup, 0, "$when: no message twice") or diag(explain \@dup);
    my %at = map { $_->{content} => $_->{offset} } @$h;
    my @lost = grep { !defined $at{$_} || $at{$_} != $acked{$_} }
               keys %acked;
    is(scalar @lost, 0, "$when: every acknowledged message at its offset")
        or diag("lost or moved: @lost[0 .. ($#lost < 9 ? $#lost : 9)]");
    # Every node converges to the same history.
    my ($same, $deadline) = (0, time + 15);
    while (!$same && time < $deadline) {
        $same = 1;
        for my $k (2, 3) {
            my $o = history($k);
            $same = 0 unless $o && @$o == @$h
                && $o->[-1]{content} eq $h->[-1]{content};
        }
        sleep 0.2 unless $same;
    }
    ok($same, "$when: every node returns the same history");
    is_deeply(history(2), $h, "$when: node 2 identical") if $same;
    is_deeply(history(3), $h, "$when: node 3 identical") if $same;
    return $h;
}

sub drain_queue {
    my $n = 0;
    for (1 .. 100000) {
        my $r = $t->get("/messages/messages/queue/$QUEUE", token => $tok,
                        node => 1 + $n % 3, timeout => 10);
        last unless $r->{status} == 200 && $r->{json}{message};
        $received_twice++ if $received{$r->{json}{message}{content}}++;
        $n++;
    }
    return $n;
}

sub check_queue {
    my ($when) = @_;
    drain_queue();
    my @lost = grep { !$received{$_} } keys %sent_ok;
    is(scalar @lost, 0, "$when: every acknowledged queue message received")
        or diag("lost: @lost[0 .. ($#lost < 9 ? $#lost : 9)]; failed "
                . "receives: " . join(', ', map { "$_->{node}:$_->{status}"
                    . sprintf('@%.2f', $_->{latency}) } @failed_receives));
    ok(!$received_twice, "$when: no queue message delivered twice");
}

# --- kill -9 of the leader ---------------------------------------------------

my $victim = leader_of_topic();
ok($victim, "node $victim leads the topic's partition $part");
my @others = grep { $_ != $victim } $t->nodes;
my ($run, @pids) = start_load(@others);
sleep 1.5;
my $killed_at = time;
$t->kill_nginx($victim);
$t->kill_momd($victim);
sleep 4;
ok($t->start_momd($victim) && $t->start_nginx($victim),
   "node $victim restarted");
my $restarted_at = time;
sleep 2;
stop_load(@pids);
my ($max_lat, @times) = collect($run);
my ($gap, $gap_at) = max_gap(@times);
cmp_ok($gap, '<', 5, sprintf 'longest pause between acknowledged '
       . 'publishes: %.2f s, from %.2f s after the kill -9 (election)',
       $gap, $gap_at - $killed_at);
cmp_ok($max_lat, '<', 8.5, sprintf 'slowest request: %.2f s (routing '
       . 'deadline 3 s, 8 s for a write whose outcome is uncertain)',
       $max_lat);
cmp_ok(scalar(keys %acked), '>', 20, scalar(keys %acked)
       . ' publishes acknowledged');
my @during = grep { $_ > $killed_at && $_ < $killed_at + 4 } @times;
cmp_ok(scalar @during, '>', 5, scalar(@during)
       . ' publishes acknowledged while the node was down');
ok($t->wait_ready(15), 'ready after the restart');
check_history('after kill -9 and restart');
check_queue('after kill -9 and restart');

# --- a clean stop hands its leaderships over ----------------------------------

# The restarted node gets its preferred leaderships back 3-4 s after its
# start (cluster.c's balancing): let that happen first. A balancing
# transfer that coincides with the stop can hold the partition for up to
# an election timeout (seen once in 49 runs: the pause began as the
# balancer moved the leadership, before the stop; docs/cluster.md).
my $settle = $restarted_at + 5 - time;
sleep $settle if $settle > 0;
my $leaving = leader_of_topic();
ok($leaving, "node $leaving leads the partition");
@others = grep { $_ != $leaving } $t->nodes;
($run, @pids) = start_load(@others);
sleep 1;
my $stopped_at = time;
$t->stop_nginx($leaving);
$t->stop_momd($leaving);
my $stop_took = time - $stopped_at;
sleep 1;
stop_load(@pids);
($max_lat, @times) = collect($run);
my @around = grep { $_ > $stopped_at - 1 } @times;
($gap) = max_gap(@around);
cmp_ok($gap, '<', 1, sprintf 'clean stop of the leader: longest pause %.2f s '
       . '(stop took %.2f s): no election wait', $gap, $stop_took);
ok($t->start_momd($leaving) && $t->start_nginx($leaving),
   "node $leaving started again");
ok($t->wait_ready(15), 'ready');
check_history('after a clean stop');
check_queue('after a clean stop');

# --- a node cut off (SIGSTOP) ----------------------------------------------------

my $cut = leader_of_topic();
ok($cut, "node $cut leads the partition now");
@others = grep { $_ != $cut } $t->nodes;
($run, @pids) = start_load(@others);
sleep 1;
$t->pause_momd($cut);
my (@to_cut, $cut_ok);
my $paused_at = time;
while (time < $paused_at + 4) {
    my $c = "cut-" . scalar(@to_cut);
    push @to_cut, $c;
    my $r = $t->post("/messages/messages/topic/$TOPIC", {content => $c},
                     token => $tok, node => $cut, timeout => 1.5);
    $cut_ok++ if $r->{status} == 200;
}
ok(!$cut_ok, scalar(@to_cut) . ' publishes sent to the stopped node: none'
   . ' acknowledged');
# The last client gave up a moment ago: let its nginx queue the cancel
# behind the request before momd reads them, as it did for the others (a
# cancel read after its request started comes too late if the node already
# knows the new leader: the request is forwarded at once).
select(undef, undef, undef, 0.3);
$t->resume_momd($cut);
sleep 2;
stop_load(@pids);
($max_lat, @times) = collect($run);
@during = grep { $_ > $paused_at + 0.5 && $_ < $paused_at + 4 } @times;
cmp_ok(scalar @during, '>', 5, scalar(@during)
       . ' publishes acknowledged through the others meanwhile');
cmp_ok($max_lat, '<', 8.5, sprintf 'slowest request: %.2f s', $max_lat);
ok($t->wait_ready(15), 'ready after SIGCONT');
my $h = check_history('after SIGSTOP/SIGCONT');
ok(!grep({ $_->{content} =~ /^cut-/ } @$h),
   'nothing sent to the stopped node was applied');
check_queue('after SIGSTOP/SIGCONT');

# --- every momd killed at once -------------------------------------------------

$t->kill_momd($_) for $t->nodes;
ok($t->start_momd($_), "momd $_ restarted") for $t->nodes;
ok($t->wait_ready(20), 'ready after the whole cluster restarted');
check_history('after kill -9 of every momd');
is_deeply($t->get('/messages/messages/queue/work', token => $tok)->{json},
          {message => undef}, 'queue still empty: nothing delivered again');

$t->check_logs;
done_testing();
