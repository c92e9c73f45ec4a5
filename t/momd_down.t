#!/usr/bin/perl

# momd down (stopped, then killed -9): nginx answers quickly (< 2 s) with a
# JSON 502/503 on every kind of route, and once momd is back, requests
# succeed again without touching nginx (stale keepalive connections to the
# old momd must not leak errors to clients).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;

my $t = MOM::Test->new(workers => 2);
our $TODO = $t->todo;
$t->start;

my $tok = $t->user_token('alice');
ok($tok, 'logged in');
is($t->post('/messages/topics', {name => 'x'}, token => $tok)->{status}, 200,
   'topic created');
is($t->post('/messages/queues', {name => 'q'}, token => $tok)->{status}, 200,
   'queue created');
# Warm the keepalive pool of both workers.
$t->get('/messages/topics') for 1 .. 20;

my @requests = (
    ['GET', '/messages/topics', undef],
    ['GET', '/messages/queues', undef],
    ['GET', '/auth/users', undef, 1],
    ['POST', '/auth/login', {username => 'alice', password => 'x'}],
    ['POST', '/auth/register', {username => 'zed', password => 'x'}],
    ['POST', '/messages/topics', {name => 'y'}, 1],
    ['POST', '/messages/messages/topic/x', {content => 1}, 1],
    ['GET', '/messages/messages/topic/x', undef],
    ['GET', '/messages/messages/queue/q', undef, 1],
    ['DELETE', '/messages/topics/x', undef, 1],
);

sub all_unavailable {
    my ($when) = @_;
    for my $q (@requests) {
        my ($m, $p, $b, $auth) = @$q;
        my $r = $t->http($m, $p, $b, undef, $auth ? (token => $tok) : ());
        ok($r->{status} == 502 || $r->{status} == 503,
           "$when: $m $p -> 502/503") or diag("got $r->{status}");
        cmp_ok($r->{elapsed}, '<', 2, "$when: $m $p answered in < 2 s");
        like($r->{headers}{'content-type'} // '', qr{^application/json},
             "$when: $m $p JSON");
        ok($r->{json} && $r->{json}{detail}, "$when: $m $p detail");
    }
}

sub all_back {
    my ($when) = @_;
    # Several rounds, so that every worker and pooled connection is used.
    my @bad;
    for my $i (1 .. 10) {
        for my $p ('/messages/topics', '/messages/queues') {
            my $r = $t->get($p);
            push @bad, "$p: $r->{status}" unless $r->{status} == 200;
        }
        my $r = $t->post('/messages/messages/topic/x', {content => $i},
                         token => $tok);
        push @bad, "publish: $r->{status}" unless $r->{status} == 200;
    }
    ok(!@bad, "$when: every request succeeds, nginx untouched")
        or diag(join ', ', @bad);
}

my $nginx_pid = $t->nginx_pid;

$t->stop_momd;
all_unavailable('momd stopped');
ok($t->start_momd, 'momd started again');
all_back('after momd restart');

$t->get('/messages/topics') for 1 .. 20;
$t->kill_momd;
all_unavailable('momd killed');
ok($t->start_momd, 'momd started after kill -9');
all_back('after kill -9 and restart');

is($t->nginx_pid, $nginx_pid, 'same nginx throughout');
ok($nginx_pid && kill(0, $nginx_pid), 'nginx still running');

$t->check_logs;
done_testing;
