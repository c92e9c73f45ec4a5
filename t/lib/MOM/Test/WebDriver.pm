package MOM::Test::WebDriver;

# Headless Chromium for the tests, driven through chromedriver's W3C
# WebDriver HTTP protocol with HTTP::Tiny and JSON::PP (no Selenium from
# CPAN). chromedriver listens on a free 127.0.0.1 port; Chromium gets a
# fresh profile in the test's directory. Both are stopped by PID: the
# session is deleted (chromedriver closes Chromium), then any process left
# of the tree chromedriver started is signalled, then chromedriver.
#
#   my $b = MOM::Test::WebDriver->new(dir => $t->dir) or die $@;
#   $b->get("http://127.0.0.1:$port/examples/sse.html");
#   $b->type('#username', 'alice');
#   $b->click('#login');
#   $b->wait_for('return document.title', 5);
#   $b->quit;
#
# available() tells whether chromium and chromedriver are installed.

use strict;
use warnings;

use HTTP::Tiny;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use MOM::Test;

our $CHROMEDRIVER = $ENV{CHROMEDRIVER} // '/usr/bin/chromedriver';
our $CHROMIUM = $ENV{CHROMIUM} // '/usr/lib/chromium/chromium';

# The element reference key of the W3C protocol.
my $ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my @LIVE;

sub available { -x $CHROMEDRIVER && -x $CHROMIUM }

# new(dir => d): chromedriver started and a session open, or undef with
# the reason in $@.
sub new {
    my ($class, %o) = @_;
    my $self = bless {
        dir   => $o{dir},
        port  => MOM::Test::free_port(),
        ua    => HTTP::Tiny->new(timeout => 60),
        base  => undef,
        owner => $$,
    }, $class;
    $self->{base} = "http://127.0.0.1:$self->{port}";
    push @LIVE, $self;

    my $log = "$self->{dir}/chromedriver.log";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        exec { $CHROMEDRIVER } $CHROMEDRIVER, "--port=$self->{port}",
            "--log-path=$log", '--allowed-ips=127.0.0.1'
            or POSIX::_exit(127);
    }
    $self->{driver_pid} = $pid;

    my $deadline = time + 15;
    while (1) {
        my $r = $self->{ua}->get("$self->{base}/status");
        last if $r && $r->{status} == 200
            && eval { $JSON->decode($r->{content})->{value}{ready} };
        if (waitpid($pid, WNOHANG) == $pid || time > $deadline) {
            $@ = "chromedriver did not come up" . MOM::Test::tail($log);
            $self->quit;
            return undef;
        }
        sleep 0.05;
    }

    my $profile = "$self->{dir}/chromium-profile";
    mkdir $profile;
    my $v = eval {
        $self->_call(POST => '/session', {capabilities => {alwaysMatch => {
            browserName => 'chrome',
            'goog:chromeOptions' => {
                binary => $CHROMIUM,
                args => [
                    '--headless', '--no-sandbox', '--disable-gpu',
                    '--no-first-run', '--disable-background-networking',
                    '--disable-component-update', '--disable-sync',
                    '--disable-quic', '--disable-dev-shm-usage',
                    "--user-data-dir=$profile",
                ],
            },
        }}});
    };
    if (!$v || !$v->{sessionId}) {
        $@ = "no WebDriver session: " . ($@ || 'no sessionId')
             . MOM::Test::tail($log);
        $self->quit;
        return undef;
    }
    $self->{session} = $v->{sessionId};
    $self->{browser} = $v->{capabilities}{browserVersion};
    # Chromium and its helpers: signalled by PID if they outlive quit.
    $self->{tree} = [_descendants($pid)];
    return $self;
}

sub browser_version { $_[0]{browser} }
sub driver_pid      { $_[0]{driver_pid} }
sub pids            { @{$_[0]{tree} // []} }

# _call(method, path, body): the command's `value`; dies with the
# WebDriver error (`error: message`) on failure.
sub _call {
    my ($self, $method, $path, $body) = @_;
    my $r = $self->{ua}->request($method, "$self->{base}$path", {
        headers => {'Content-Type' => 'application/json'},
        defined $body ? (content => $JSON->encode($body)) : (),
    });
    my $json = eval { $JSON->decode($r->{content}) };
    if ($r->{status} != 200 || !$json) {
        my $v = $json ? $json->{value} : {};
        die "WebDriver $method $path: $r->{status} "
            . (ref $v eq 'HASH' && $v->{error}
               ? "$v->{error}: $v->{message}" : $r->{content}) . "\n";
    }
    return $json->{value};
}

sub _s { "/session/$_[0]{session}" }

sub get { my ($self, $url) = @_; $self->_call(POST => $self->_s . '/url',
                                              {url => $url}) }

# find(css): the element reference of the first match (dies if none).
sub find {
    my ($self, $css) = @_;
    my $v = $self->_call(POST => $self->_s . '/element',
                         {using => 'css selector', value => $css});
    return $v->{$ELEMENT};
}

sub type {
    my ($self, $css, $text) = @_;
    my $el = $self->find($css);
    $self->_call(POST => $self->_s . "/element/$el/clear", {});
    return $self->_call(POST => $self->_s . "/element/$el/value",
                        {text => $text});
}

sub click {
    my ($self, $css) = @_;
    my $el = $self->find($css);
    return $self->_call(POST => $self->_s . "/element/$el/click", {});
}

# script(js, args...): run a function body in the page; its return value.
sub script {
    my ($self, $js, @args) = @_;
    return $self->_call(POST => $self->_s . '/execute/sync',
                        {script => $js, args => \@args});
}

# wait_for(js, seconds): poll until the script returns a true value; that
# value, or undef after the time.
sub wait_for {
    my ($self, $js, $secs, @args) = @_;
    my $deadline = time + $secs;
    while (1) {
        my $v = $self->script($js, @args);
        return $v if $v;
        return undef if time >= $deadline;
        sleep 0.02;
    }
}

# quit: delete the session, then stop whatever is left by PID.
sub quit {
    my ($self) = @_;
    return unless $self->{owner} == $$;
    my $pid = delete $self->{driver_pid} or return;
    my @tree = (@{$self->{tree} // []}, _descendants($pid));
    if (my $session = delete $self->{session}) {
        eval { $self->_call(DELETE => "/session/$session") };
    }
    my %seen;
    @tree = grep { !$seen{$_}++ } @tree;
    _wait_gone(5, @tree);
    for my $sig (qw(TERM KILL)) {
        my @left = grep { MOM::Test::_alive($_) } @tree;
        last unless @left;
        kill $sig, @left;
        _wait_gone(5, @left);
    }
    kill 'TERM', $pid;
    my $deadline = time + 5;
    sleep 0.02 while waitpid($pid, WNOHANG) == 0 && time < $deadline;
    if (waitpid($pid, WNOHANG) == 0) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
    $self->{left} = [grep { MOM::Test::_alive($_) } @tree];
}

# After quit: processes of the tree still alive (should be none).
sub left_behind { @{$_[0]{left} // []} }

sub _wait_gone {
    my ($secs, @pids) = @_;
    my $deadline = time + $secs;
    sleep 0.05 while time < $deadline && grep { MOM::Test::_alive($_) } @pids;
}

sub _descendants {
    my ($pid) = @_;
    my @all;
    my @todo = ($pid);
    while (@todo) {
        my @kids = MOM::Test::child_pids(shift @todo);
        push @all, @kids;
        push @todo, @kids;
    }
    return @all;
}

END {
    local $?;
    $_->quit for grep { $_->{owner} == $$ } @LIVE;
}

1;
