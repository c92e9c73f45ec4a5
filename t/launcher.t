#!/usr/bin/perl

# scripts/mom-cluster, the local launcher, in a private run directory
# (MOM_RUN_DIR) on free ports: up waits until the node answers, is
# idempotent, keeps the JWT secret private and stable; status reports;
# kill K crashes nginx (master and workers) and momd; start K brings the
# node back with its data; stop K and down stop by pid, gracefully.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use HTTP::Tiny;
use MOM::Test;
use MOM::Test::JWT qw(make_jwt);

our $TODO = MOM::Test->todo;

my $scratch = MOM::Test->new;    # for its temp dir only
my $run = $scratch->dir . '/run';
my $port = MOM::Test::free_port();
my $grpc = MOM::Test::free_port();
my $launcher = "$MOM::Test::ROOT/scripts/mom-cluster";

local $ENV{MOM_RUN_DIR} = $run;
local $ENV{MOM_BASE_PORT} = $port;
local $ENV{MOM_GRPC_BASE_PORT} = $grpc;
local $ENV{MOM_PBKDF2_ITERATIONS} = 1000;
local $ENV{MOM_WORKERS} = 2;
local $ENV{MOM_MOMD} = $MOM::Test::MOMD;
local $ENV{MOM_MODULE} = $MOM::Test::MODULE;
delete local $ENV{NODES};

sub mc {
    my $out = qx{$launcher @_ 2>&1};
    return ($? >> 8, $out);
}

sub pid_of {
    my $text = MOM::Test::read_file_maybe("$run/node1/$_[0].pid");
    return $text =~ /(\d+)/ ? $1 : undef;
}

my $ua = HTTP::Tiny->new(timeout => 5);
sub topics_status {
    return $ua->get("http://127.0.0.1:$port/messages/topics")->{status};
}

my ($rc, $out) = mc('up', 1);
is($rc, 0, 'up 1 succeeds') or diag($out);
like($out, qr/node 1: .*nginx up .*momd up/, 'up prints the status');
is(topics_status(), 200, 'node answers right after up returns');

my $secret_file = "$run/jwt.secret";
ok(-s $secret_file, 'jwt.secret generated');
is((stat $secret_file)[2] & 07777, 0600, 'jwt.secret mode 0600');
my $secret = MOM::Test::read_file_maybe($secret_file);
for my $f (qw(nginx.conf momd.conf momd.pid nginx.pid logs/error.log
              logs/momd.log mom.db)) {
    ok(-e "$run/node1/$f", "node1/$f exists");
}
my ($nginx_pid, $momd_pid) = (pid_of('nginx'), pid_of('momd'));
ok($nginx_pid && kill(0, $nginx_pid), 'nginx running');
ok($momd_pid && kill(0, $momd_pid), 'momd running');
my @workers = MOM::Test::child_pids($nginx_pid // 0);
is(scalar @workers, 2, 'two nginx workers');

($rc, $out) = mc('up', 1);
is($rc, 0, 'up again succeeds');
like($out, qr/already running/, 'and says it is already running');
is(pid_of('nginx'), $nginx_pid, 'same nginx');
is(pid_of('momd'), $momd_pid, 'same momd');

($rc, $out) = mc('up', 2);
isnt($rc, 0, 'up 2 while 1 node runs is refused');

($rc, $out) = mc('status');
is($rc, 0, 'status: 0 when every node is up');
like($out, qr/node 1: rest http:\/\/127\.0\.0\.1:$port/, 'status: REST port');
like($out, qr/grpc 127\.0\.0\.1:$grpc/, 'status: gRPC port');

# The deployment uses the secret: tokens signed with it are accepted.
my $r = $ua->post("http://127.0.0.1:$port/auth/register", {
    headers => {'Content-Type' => 'application/json'},
    content => '{"username":"alice","password":"pw-alice"}'});
is($r->{status}, 200, 'register through the launched node');
my $tok = make_jwt('HS256', $secret =~ s/\n\z//r,
                   {sub => 'alice', iat => time, exp => time + 60});
$r = $ua->get("http://127.0.0.1:$port/auth/users",
              {headers => {Authorization => "Bearer $tok"}});
is($r->{status}, 200, 'run/jwt.secret is the HS256 secret');

# kill: a crash, every process of the node gone.
($rc, $out) = mc('kill', 1);
is($rc, 0, 'kill 1') or diag($out);
ok(!kill(0, $_), "pid $_ gone after kill") for $nginx_pid, $momd_pid, @workers;
isnt(topics_status(), 200, 'node no longer answers');
($rc, $out) = mc('status');
isnt($rc, 0, 'status: non-zero with a node down');
like($out, qr/nginx down\s+momd down/, 'status: node 1 down');

($rc, $out) = mc('start', 1);
is($rc, 0, 'start 1') or diag($out);
is(topics_status(), 200, 'node answers after start');
$r = $ua->post("http://127.0.0.1:$port/auth/login", {
    headers => {'Content-Type' => 'application/json'},
    content => '{"username":"alice","password":"pw-alice"}'});
is($r->{status}, 200, 'data survived the crash (login works)');

($nginx_pid, $momd_pid) = (pid_of('nginx'), pid_of('momd'));
($rc, $out) = mc('stop', 1);
is($rc, 0, 'stop 1');
ok(!kill(0, $_), "pid $_ gone after stop") for $nginx_pid, $momd_pid;
ok(!-e "$run/node1/momd.pid" && !-e "$run/node1/nginx.pid",
   'pid files removed');

($rc, $out) = mc('up');
is($rc, 0, 'up without N restarts the known cluster') or diag($out);
is(topics_status(), 200, 'answers again');

($rc, $out) = mc('down');
is($rc, 0, 'down') or diag($out);
isnt(topics_status(), 200, 'nothing answers after down');
ok(-e "$run/node1/mom.db", 'data kept after down');
is(MOM::Test::read_file_maybe($secret_file), $secret,
   'secret never regenerated');

($rc, $out) = mc('kill', 3);
isnt($rc, 0, 'kill of a node outside the cluster is refused');
($rc, $out) = mc('bogus');
isnt($rc, 0, 'unknown command: usage, non-zero');

{
    local $ENV{MOM_MOMD} = '/nonexistent/momd';
    ($rc, $out) = mc('up', 1);
    isnt($rc, 0, 'up without binaries fails');
    like($out, qr/make/, 'and says to run make');
}

# up times out (10 s) and points at the logs when the node cannot answer.
{
    local $ENV{MOM_RUN_DIR} = $scratch->dir . '/run2';
    local $ENV{MOM_MOMD} = '/bin/sleep';   # "runs", never serves
    my $t0 = time;
    ($rc, $out) = mc('up', 1);
    isnt($rc, 0, 'up fails when the node never answers');
    like($out, qr/logs/, 'and prints where the logs are');
    cmp_ok(time - $t0, '<', 30, 'within the timeout');
    mc('down');
}

done_testing;
