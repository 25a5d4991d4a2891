#!/usr/bin/perl
# Runs OpenSSL's test recipes as the tree's own test/run_tests.pl does (the
# same environment, the 00-prep recipes first, TAP::Harness with HARNESS_JOBS
# jobs, the slow recipes first when parallel), and records each recipe's
# result, which run_tests.pl only prints: openssl-selftest.sh compares two
# runs recipe by recipe.
#
# Usage, in the build directory (build_shared): SRCTOP=.. BLDTOP=.
#   perl openssl-selftest-run.pl OUTDIR [RECIPE...]
# (RECIPE: a name like test_evp; none: all). Writes
#   OUTDIR/tap/<recipe>.tap  the recipe's whole TAP stream (stdout and stderr)
#   OUTDIR/results.tsv       one line per recipe: name, result (ok, failed,
#                            skipped), planned, run, passed, failed, skipped,
#                            todo, exit status, the failed subtests
#                            ("3 - description; 7 - ..."), the skip reason
# and prints TAP::Harness's usual summary.
use strict;
use warnings;
use File::Basename;
use File::Path qw(make_path);
use File::Spec::Functions qw(catdir catfile rel2abs);
use TAP::Harness;

my ($outdir, @wanted) = @ARGV;
die "usage: $0 OUTDIR [RECIPE...]\n" unless defined $outdir;
my $srctop = $ENV{SRCTOP} or die "$0: SRCTOP is not set\n";
my $bldtop = $ENV{BLDTOP} or die "$0: BLDTOP is not set\n";
my $jobs = $ENV{HARNESS_JOBS} // 1;
my $recipes = catdir($srctop, "test", "recipes");

# 1. The environment run_tests.pl gives the recipes.
$ENV{OPENSSL_CONF} = rel2abs(catfile($srctop, "apps", "openssl.cnf"));
$ENV{OPENSSL_CONF_INCLUDE} = rel2abs(catdir($bldtop, "test"));
$ENV{OPENSSL_MODULES} = rel2abs(catdir($bldtop, "providers"));
$ENV{OPENSSL_ENGINES} = rel2abs(catdir($bldtop, "engines"));
$ENV{CTLOG_FILE} = rel2abs(catfile($srctop, "test", "ct", "log_list.cnf"));
# 3.5's run_tests.pl also has malloc fill freed memory (3.0's does not).
open(my $run_tests, '<', catfile($srctop, "test", "run_tests.pl")) or die "run_tests.pl: $!\n";
$ENV{MALLOC_PERTURB_} //= '128' if grep { /ENV\{'MALLOC_PERTURB_'\}/ } <$run_tests>;
close($run_tests);

# 2. The recipes: preps first (they are mandatory), then the rest in
# run_tests.pl's order.
sub recipe_name { (my $name = basename($_[0])) =~ s/^[0-9][0-9]-(.*)\.t$/$1/; $name }
my @preps = sort glob(catfile($recipes, "00-prep_*.t"));
my %is_prep = map { $_ => 1 } @preps;
my @rest = grep { !$is_prep{$_} } glob(catfile($recipes, "*.t"));
if (@wanted) {
    my %want = map { $_ => 1 } @wanted;
    @rest = grep { $want{recipe_name($_)} } @rest;
    die "$0: no recipe named @wanted\n" unless @rest;
}
sub reorder {
    my $key = shift;
    $key =~ s/(\d+)-/01-/ if $jobs > 1 && $key =~ m/test_ssl_new|test_fuzz/;
    return $key;
}
@rest = sort { reorder($a) cmp reorder($b) } @rest;

# 3. Each recipe's TAP into its own file, and its failed subtests (nested
# ones too: OpenSSL's subtests are indented TAP the parser sees as text).
make_path(catdir($outdir, "tap"));
my %failed_subtests;
my $harness = TAP::Harness->new({
    verbosity => 0,
    lib => [rel2abs(catdir($srctop, "util", "perl"))],
    switches => '-w',
    merge => 1,
    ($jobs > 1 ? (jobs => $jobs) : ()),
    callbacks => {
        made_parser => sub {
            my ($parser, $test) = @_;
            my $name = recipe_name($test->[0]);
            open(my $tap, '>', catfile($outdir, "tap", "$name.tap")) or die "$name.tap: $!\n";
            $tap->autoflush(1);
            $failed_subtests{$name} = [];
            my @depth;  # the numbers of the enclosing subtests, outermost first
            $parser->callback(ALL => sub {
                my $line = $_[0]->as_string;
                print $tap "$line\n";
                if ($line =~ /^((?:    )*)not ok (\d+)(?: - )?(.*?)(\s+# TODO.*)?$/ && !defined $4) {
                    my $level = length($1) / 4;
                    push @{$failed_subtests{$name}}, join('.', ('*') x $level, $2) . " - $3";
                }
            });
        },
    },
});
my @aggregates = ($harness->runtests(map { [$_, basename($_)] } @preps));
push @aggregates, $harness->runtests(map { [$_, basename($_)] } @rest)
    unless $aggregates[0]->has_errors;

# 4. One line per recipe.
open(my $results, '>', catfile($outdir, "results.tsv")) or die "results.tsv: $!\n";
my $errors = 0;
for my $aggregate (@aggregates) {
  $errors += $aggregate->has_errors;
  for my $description ($aggregate->descriptions) {
    my ($parser) = $aggregate->parsers($description);
    my $name = recipe_name($description);
    my $result = $parser->skip_all ? "skipped" : $parser->has_problems ? "failed" : "ok";
    my $failed = join("; ", @{$failed_subtests{$name} // []});
    $failed = "none" if $failed eq "";
    print $results join("\t", $name, $result, $parser->tests_planned // 0, $parser->tests_run,
        scalar($parser->passed), scalar($parser->failed), scalar($parser->skipped),
        scalar($parser->todo), $parser->exit // 0, $failed,
        $parser->skip_all || ""), "\n";
  }
}
close($results);
exit($errors ? 1 : 0);
