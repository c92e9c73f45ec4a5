#!/usr/bin/perl

# Queue semantics under competition: 1,000 messages, 8 consumer processes
# receiving concurrently (through 2 nginx workers): every message is
# delivered exactly once overall, each consumer sees ids in increasing
# order (= send order), contents match their ids; afterwards the queue is
# empty ({"message": null}). Also: consumers racing with a producer.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;

my $N = 1000;
my $CONSUMERS = 8;

my $t = MOM::Test->new(workers => 2);
our $TODO = $t->todo;
$t->start;

my $tok = $t->user_token('alice');
ok($tok, 'logged in');
is($t->post('/messages/queues', {name => 'jobs'}, token => $tok)->{status},
   200, 'queue created');

my $r = $t->get('/messages/messages/queue/jobs', token => $tok);
is($r->{status}, 200, 'receive from the new, empty queue');
is($r->{content}, '{"message":null}', 'empty queue: {"message":null}');

# Fill the queue with 2 concurrent senders of 500 each; their ids are
# recorded to know the send order.
my $dir = $t->dir;
my @senders;
for my $s (0 .. 1) {
    push @senders, $t->spawn(sub {
        open my $fh, '>', "$dir/sent.$s" or die $!;
        for my $i (1 .. $N / 2) {
            my $c = $s * 100000 + $i;
            my $r = $t->post('/messages/messages/queue/jobs', {content => $c},
                             token => $tok);
            die "send $c: $r->{status}\n" unless $r->{status} == 200;
            print $fh "$r->{json}{id} $c\n";
        }
        close $fh;
    });
}
my @st = $t->wait_children(120, @senders);
is_deeply(\@st, [0, 0], 'senders sent 1000 messages');

my %content_of;    # id -> content as sent
for my $s (0 .. 1) {
    for (split /\n/, MOM::Test::read_file_maybe("$dir/sent.$s")) {
        my ($id, $c) = split;
        $content_of{$id} = $c;
    }
}
is(scalar keys %content_of, $N, '1000 distinct ids given');
is_deeply([sort { $a <=> $b } keys %content_of], [1 .. $N], 'ids 1..1000');

sub consume {
    my ($tag, $until_empty, $deadline_s) = @_;
    my $deadline = time + $deadline_s;
    open my $fh, '>', "$dir/got.$tag" or die $!;
    my $empty = 0;
    while (time < $deadline) {
        my $r = $t->get('/messages/messages/queue/jobs', token => $tok);
        die "receive: $r->{status} $r->{content}\n"
            unless $r->{status} == 200 && $r->{json};
        my $m = $r->{json}{message};
        if (!$m) {
            last if $until_empty->(++$empty);
            sleep 0.01;
            next;
        }
        print $fh "$m->{id} $m->{content} $m->{sender}\n";
    }
    close $fh;
}

my @consumers = map {
    my $c = $_;
    $t->spawn(sub { consume($c, sub { 1 }, 120) });
} 1 .. $CONSUMERS;
@st = $t->wait_children(180, @consumers);
is_deeply(\@st, [(0) x $CONSUMERS], "$CONSUMERS consumers finished");

sub check_deliveries {
    my ($what, @tags) = @_;
    my %seen;
    my ($ordered, $matching, $sender_ok) = (1, 1, 1);
    my %per;
    for my $c (@tags) {
        my $prev = 0;
        for (split /\n/, MOM::Test::read_file_maybe("$dir/got.$c")) {
            my ($id, $content, $sender) = split;
            $seen{$id}++;
            $ordered = 0 unless $id > $prev;
            $prev = $id;
            $matching = 0 unless ($content_of{$id} // -1) == $content;
            $sender_ok = 0 unless $sender eq 'alice';
            $per{$c}++;
        }
    }
    my @dup = grep { $seen{$_} > 1 } keys %seen;
    my @missing = grep { !$seen{$_} } keys %content_of;
    ok(!@dup, "$what: no message delivered twice")
        or diag(scalar(@dup) . " duplicates");
    ok(!@missing, "$what: every message delivered")
        or diag(scalar(@missing) . " missing");
    ok($ordered, "$what: each consumer sees increasing ids");
    ok($matching, "$what: contents match their ids");
    ok($sender_ok, "$what: sender is the sending user");
    note("$what: per consumer: "
         . join ' ', map { "$_=" . ($per{$_} // 0) } @tags);
}

check_deliveries('8 consumers', 1 .. $CONSUMERS);

$r = $t->get('/messages/messages/queue/jobs', token => $tok);
is($r->{content}, '{"message":null}', 'drained queue: {"message":null}');

# Consumers running while a producer sends: nothing lost or doubled.
%content_of = ();
my $prod = $t->spawn(sub {
    open my $fh, '>', "$dir/sent.live" or die $!;
    for my $i (1 .. 300) {
        my $r = $t->post('/messages/messages/queue/jobs',
                         {content => 500000 + $i}, token => $tok);
        die "send: $r->{status}\n" unless $r->{status} == 200;
        print $fh "$r->{json}{id} ", 500000 + $i, "\n";
    }
    close $fh;
    open $fh, '>', "$dir/producer.done";
    close $fh;
});
@consumers = map {
    my $c = "live$_";
    # Stop once the producer is done and the queue has been seen empty.
    $t->spawn(sub { consume($c, sub { -e "$dir/producer.done" }, 120) });
} 1 .. 4;
@st = $t->wait_children(180, $prod, @consumers);
is_deeply(\@st, [(0) x 5], 'producer and 4 live consumers finished');
for (split /\n/, MOM::Test::read_file_maybe("$dir/sent.live")) {
    my ($id, $c) = split;
    $content_of{$id} = $c;
}
is(scalar keys %content_of, 300, '300 live messages sent');
check_deliveries('live', map { "live$_" } 1 .. 4);

$t->check_logs;
done_testing;
