/*
 * hot_standby.pml: the active / hot-standby protocol of titan-execution, for Spin 6.
 *
 * Two instances (0 and 1), the KV lease, the epoch marker, the event stream with its epoch
 * fence, the write-ahead of every order and the venue. Presence-based takeover: the standby
 * takes the lease over by compare-and-set when the holder's presence subject answers "no
 * responders", which is true when the holder crashed and can be false (a NATS node blip).
 * Faults: message loss, process pause (SIGSTOP), presence blips (at most FAULTS of them in
 * all) and one crash. README.md (this folder) says what is abstracted and how to run it.
 *
 * Properties (ltl blocks at the end; select one with ./pan -N <name>):
 *   safety1   never two instances with venue writes accepted in the same epoch
 *   safety2   never a venue write whose write-ahead event is not durable in its epoch
 *   safety3   never an order accepted twice by the venue (the end-to-end consequence)
 *   liveness  an active that crashes while the other lives is replaced (run with -a -f)
 * Witnesses (must be VIOLATED: they show the model reaches the dangerous situations):
 *   witness_two_active   both alive and ACTIVE at once (a stale leader beside the new one)
 *   witness_stale_write  the venue accepts a write of an epoch older than the newest marker
 *   witness_wrong_presence  both ACTIVE after a presence takeover of a live holder
 *
 * Deliberately broken variants (spin -D...), each must give a counterexample:
 *   BROKEN_NO_EPOCH_MARKER  takeover adopts the current epoch, writes no marker (safety1, 3)
 *   BROKEN_NO_WRITE_AHEAD   the venue write goes out with its event, not after it (safety2, 3)
 *   BROKEN_FENCED_STAYS     a fenced instance never rejoins as standby (liveness)
 */

#ifndef FAULTS
#define FAULTS 2          /* losses + pauses + presence blips, in all */
#endif
#define NORD 2            /* orders (commands) to place, each at most once */
#define ALL_ORDERS 3      /* bitmask of all NORD orders */
#define MAXE (FAULTS + 3) /* epochs 1..MAXE (an assertion checks the bound) */
#if FAULTS > 4
#error "FAULTS > 4: the epoch bitmasks (byte durable[]) hold epochs up to 7"
#endif
#define NONE 2            /* no instance */

#define STANDBY   0
#define PROMOTING 1       /* lease acquired, epoch marker not yet written */
#define ACTIVE    2
#define FENCED    3

#define NOANS    0
#define ACCEPTED 1
#define REFUSED  2

#define leading(i) (role[i] == PROMOTING || role[i] == ACTIVE)
#define up(i)      (!crashed[i] && !paused[i])
#define spare      (faults < FAULTS)
#define live_leader ((role[0] == ACTIVE && !crashed[0]) || (role[1] == ACTIVE && !crashed[1]))
#define two_active (role[0] == ACTIVE && role[1] == ACTIVE && !crashed[0] && !crashed[1])

/* ---------------------------------------------------------------- instances (beliefs) */
byte role[2];
bit  crashed[2];
bit  paused[2];
bit  dl[2];       /* the local lease deadline is still ahead (own monotonic clock) */
bit  miss[2];     /* a renew went unanswered: without a later good one the deadline passes */
bit  revok[2];    /* my lease revision is the key's newest (a CAS on it would succeed) */
bit  vfresh[2];   /* my last read of the lease is still the key's newest entry */
byte vh[2];       /* the holder in that read (NONE: empty, expired or released) */
byte mseen[2];    /* the newest epoch marker this instance knew when it took the lease */
byte epoch[2];    /* the epoch it leads in (0: none yet) */
byte known[2];    /* orders a leader knows are decided: drained from the stream, or its own */
byte wo[2];       /* order+1 whose write-ahead this leader awaits (0: none) */
bit  evwait[2];   /* waiting for the answer to its event write */
byte evans[2];    /* that answer, once it came */

/* ---------------------------------------------------------------------- the servers */
byte lease_h = 0;       /* KV lease holder (NONE: no entry or a delete/expiry marker) */
byte marker = 1;        /* the newest epoch marker; its number IS the epoch */
byte durable[NORD];     /* bit e set: OrderSubmitted(order) accepted by the stream in epoch e */
byte evq[2];            /* event write in flight from instance i (order+1) ... */
byte eve[2];            /* ... fenced on this epoch */
byte vq[2];             /* venue write in flight from instance i (order+1) ... */
byte ve[2];             /* ... by a leader of this epoch */
byte vcount[NORD];      /* venue acceptances per order (saturates at 2) */
byte vwriter[MAXE + 1]; /* the instance whose venue writes were accepted in epoch e */

/* ---------------------------------------------------------------- faults and records */
byte faults = 0;
byte crashes = 0;
bit  split = 0;       /* safety1 broken */
bit  wa_bad = 0;      /* safety2 broken */
bit  dup = 0;         /* safety3 broken */
bit  acrash = 0;      /* a leading instance crashed (the other lives: one crash at most) */
bit  stale_write = 0; /* a venue write of an epoch older than the newest marker landed */
bit  wrong_presence = 0; /* a presence takeover happened while the holder was alive */

/* A new lease entry: every revision seen before is stale. */
inline lease_written() {
  revok[0] = 0; revok[1] = 0; vfresh[0] = 0; vfresh[1] = 0
}

/* Take the lease (acquire over an empty entry, or takeover over a dead holder's): the
 * caller has checked that the CAS succeeds (its read is still the newest entry). */
inline lease_taken(me) {
  lease_h = me; lease_written(); revok[me] = 1;
  role[me] = PROMOTING; dl[me] = 1; miss[me] = 0; mseen[me] = marker
}

/* Stop venue writes, forget the leader's state (rebuilt from the stream on rejoining),
 * and release the lease by compare-and-delete when it may still be ours. */
inline fence(me, rel) {
  role[me] = FENCED; dl[me] = 0; miss[me] = 0; epoch[me] = 0; mseen[me] = 0;
  known[me] = 0; wo[me] = 0; evwait[me] = 0; evans[me] = NOANS;
  if
  :: rel && revok[me] -> lease_h = NONE; lease_written()
  :: rel && revok[me] && spare -> faults++     /* the delete was lost: the TTL decides */
  :: else -> skip
  fi;
  revok[me] = 0
}

/* The stream applies an event write: accepted only while its epoch is the newest marker. */
inline stream_apply(i, answered) {
  if
  :: eve[i] == marker ->
     durable[evq[i] - 1] = durable[evq[i] - 1] | (1 << eve[i]);
     printf("stream accepts i%d's OrderSubmitted(%d) in epoch %d\n", i, evq[i] - 1, eve[i]);
     if :: evwait[i] && answered -> evans[i] = ACCEPTED :: else -> skip fi
  :: else ->
     printf("stream refuses i%d's OrderSubmitted(%d): epoch %d, marker %d\n",
            i, evq[i] - 1, eve[i], marker);
     if :: evwait[i] && answered -> evans[i] = REFUSED :: else -> skip fi
  fi;
  evq[i] = 0; eve[i] = 0
}

/* The venue accepts a write: record (instance, epoch) and check the properties. */
inline venue_apply(i) {
  printf("venue accepts order %d from i%d, epoch %d\n", vq[i] - 1, i, ve[i]);
  if :: (durable[vq[i] - 1] & (1 << ve[i])) == 0 -> wa_bad = 1 :: else -> skip fi;
  if :: vwriter[ve[i]] != NONE && vwriter[ve[i]] != i -> split = 1 :: else -> skip fi;
  if :: ve[i] < marker -> stale_write = 1 :: else -> skip fi;
  vwriter[ve[i]] = i;
  if
  :: vcount[vq[i] - 1] >= 1 -> dup = 1; vcount[vq[i] - 1] = 2
  :: else -> vcount[vq[i] - 1] = 1
  fi;
  vq[i] = 0; ve[i] = 0
}

proctype Instance(byte me) {
  byte o;
end:
  do
  /* ------------------------------------------------------------------ standby */
  :: atomic { up(me) && role[me] == STANDBY && !vfresh[me] ->   /* read the lease (poll/watch) */
       vfresh[me] = 1; vh[me] = lease_h; printf("i%d reads the lease: holder %d\n", me, lease_h) }
  :: atomic { up(me) && role[me] == STANDBY && vfresh[me] && vh[me] == me ->
       lease_h = NONE; lease_written();       /* a late write of ours: compare-and-delete */
       printf("i%d releases a lease entry of its own\n", me) }
  :: atomic { up(me) && role[me] == STANDBY && vfresh[me] && vh[me] == NONE ->
       if                                     /* acquire: CAS on the empty entry's revision */
       :: lease_taken(me); printf("i%d acquires the free lease\n", me)
       :: spare -> faults++; lease_h = me; lease_written()  /* applied, answer lost */
       :: spare -> faults++; vfresh[me] = 0                 /* lost: not applied */
       fi }
  :: atomic { up(me) && role[me] == STANDBY && vfresh[me] && vh[me] == 1 - me &&
              (crashed[1 - me] || spare) ->
       /* presence: a run of "no responders" from the holder seen at this revision. True when
        * it crashed; else its NATS node blipped (a fault) and the holder lives on. Takeover
        * = KV update with last = that revision (vfresh: still the newest entry). */
       if
       :: !crashed[1 - me] -> faults++; wrong_presence = 1;
          printf("i%d: no responders (a node blip, holder alive)\n", me)
       :: else -> printf("i%d: no responders (holder crashed)\n", me)
       fi;
       if
       :: lease_taken(me); printf("i%d takes the lease over by CAS\n", me)
       :: spare -> faults++; lease_h = me; lease_written()  /* applied, answer lost */
       :: spare -> faults++; vfresh[me] = 0                 /* lost: not applied */
       fi }
  /* ---------------------------------------------------- leading: lease and takeover */
  :: atomic { up(me) && leading(me) && !dl[me] ->                   /* past the deadline */
       printf("i%d: lease deadline passed, fencing\n", me); fence(me, 1) }
  :: atomic { up(me) && role[me] == PROMOTING && dl[me] ->
#ifdef BROKEN_NO_EPOCH_MARKER
       epoch[me] = marker;                    /* adopts the current epoch: no new marker */
       printf("i%d adopts epoch %d (BROKEN: no marker)\n", me, marker);
#else
       if                                     /* the epoch marker: CAS on the last marker */
       :: marker == mseen[me] -> assert(marker < MAXE); marker++; epoch[me] = marker;
          printf("i%d writes epoch marker %d\n", me, marker)
       :: else -> printf("i%d: epoch marker refused, fencing\n", me); fence(me, 1)
       fi;
#endif
       if
       :: role[me] == PROMOTING ->            /* drain to the head: every decided order */
          known[me] = (durable[0] != 0) | ((durable[1] != 0) << 1);
          role[me] = ACTIVE;
          printf("i%d drained: ACTIVE in epoch %d, knows orders %d\n", me, epoch[me], known[me])
       :: else -> skip
       fi }
  /* --------------------------------------------- active: write-ahead, then the venue */
  :: atomic { up(me) && role[me] == ACTIVE && dl[me] && !evwait[me] && evq[me] == 0 &&
              vq[me] == 0 && known[me] != ALL_ORDERS ->
       if :: (known[me] & 1) == 0 -> o = 0 :: (known[me] & 2) == 0 -> o = 1 fi;
       known[me] = known[me] | (1 << o);
       evq[me] = o + 1; eve[me] = epoch[me]; evwait[me] = 1; evans[me] = NOANS;
       printf("i%d decides order %d: OrderSubmitted sent, epoch %d\n", me, o, epoch[me]);
#ifdef BROKEN_NO_WRITE_AHEAD
       vq[me] = o + 1; ve[me] = epoch[me];    /* sent beside its event, not after it */
#else
       wo[me] = o + 1;
#endif
       o = 0 }
  :: atomic { up(me) && role[me] == ACTIVE && dl[me] && evwait[me] && evans[me] == ACCEPTED ->
       evwait[me] = 0; evans[me] = NOANS;     /* durable: may_write_venue, then send */
       if
       :: wo[me] != 0 -> vq[me] = wo[me]; ve[me] = epoch[me]; wo[me] = 0;
          printf("i%d: write-ahead durable, order %d sent to the venue\n", me, vq[me] - 1)
       :: else -> skip
       fi }
  :: atomic { up(me) && leading(me) && evwait[me] && evans[me] == REFUSED ->
       printf("i%d: event refused (newer epoch), fencing\n", me);
       fence(me, 0) }                          /* a newer epoch exists: deposed */
  :: atomic { up(me) && leading(me) && evwait[me] && evans[me] == NOANS &&
              (evq[me] == 0 || spare) ->       /* no answer: outcome unknown, rebuild */
       if :: evq[me] != 0 -> faults++ :: else -> skip fi;
       printf("i%d: event write unanswered, fencing\n", me);
       fence(me, 1) }
  /* ------------------------------------------------------------------ fenced */
#ifndef BROKEN_FENCED_STAYS
  :: atomic { up(me) && role[me] == FENCED -> role[me] = STANDBY; vfresh[me] = 0;
       printf("i%d rejoins as standby\n", me) }
#endif
  od
}

/* The renew timer of an instance (its own task: the process's other steps go on; under
 * weak fairness a renewing leader still takes its other steps). */
proctype Renewer(byte me) {
end:
  do
  :: atomic { up(me) && leading(me) && dl[me] ->              /* renew: CAS on my revision */
       if
       :: revok[me] -> lease_written(); revok[me] = 1; miss[me] = 0
       :: revok[me] && spare -> faults++; lease_written(); revok[me] = 1; miss[me] = 1
       :: revok[me] && spare -> faults++; miss[me] = 1       /* lost: not applied */
       :: !revok[me] -> printf("i%d: renew lost (lease moved on), fencing\n", me);
          fence(me, 0)                                      /* the lease moved on: lost */
       fi }
  od
}

/* Time, the servers' own steps and the faults. */
proctype World() {
end:
  do
  /* the stream applies an event write (in flight from a live, paused or dead process) */
  :: atomic { evq[0] != 0 -> stream_apply(0, 1) }
  :: atomic { evq[1] != 0 -> stream_apply(1, 1) }
  :: atomic { evq[0] != 0 && spare ->                          /* applied, answer lost */
       faults++; printf("(answer to i0 lost) "); stream_apply(0, 0) }
  :: atomic { evq[1] != 0 && spare ->
       faults++; printf("(answer to i1 lost) "); stream_apply(1, 0) }
  :: atomic { evq[0] != 0 && spare -> faults++; evq[0] = 0; eve[0] = 0;
       printf("i0's event write lost\n") }  /* request lost */
  :: atomic { evq[1] != 0 && spare -> faults++; evq[1] = 0; eve[1] = 0;
       printf("i1's event write lost\n") }
  /* the venue accepts a write sent at any time before */
  :: atomic { vq[0] != 0 -> venue_apply(0) }
  :: atomic { vq[1] != 0 -> venue_apply(1) }
  /* a leader's local deadline passes: only when it cannot renew (an unanswered renew,
   * stopped or dead); a running one renews every lease/4 and never gets there */
  :: atomic { leading(0) && dl[0] && (miss[0] || paused[0] || crashed[0]) -> dl[0] = 0;
       printf("time: i0's lease deadline passes\n") }
  :: atomic { leading(1) && dl[1] && (miss[1] || paused[1] || crashed[1]) -> dl[1] = 0;
       printf("time: i1's lease deadline passes\n") }
  /* TTL expiry (a limit marker): after the holder's deadline, and a running holder has
   * fenced by then (deadline = last renew's send time + lease - margin < the TTL) */
  :: atomic { lease_h == 0 && !dl[0] && (paused[0] || crashed[0] || !leading(0)) ->
       lease_h = NONE; lease_written(); printf("time: i0's lease expires (TTL)\n") }
  :: atomic { lease_h == 1 && !dl[1] && (paused[1] || crashed[1] || !leading(1)) ->
       lease_h = NONE; lease_written(); printf("time: i1's lease expires (TTL)\n") }
  /* SIGSTOP (it keeps its NATS subscriptions: probes time out) and SIGCONT */
  :: atomic { up(0) && spare -> faults++; paused[0] = 1; printf("SIGSTOP i0\n") }
  :: atomic { up(1) && spare -> faults++; paused[1] = 1; printf("SIGSTOP i1\n") }
  :: atomic { paused[0] -> paused[0] = 0; printf("SIGCONT i0\n") }
  :: atomic { paused[1] -> paused[1] = 0; printf("SIGCONT i1\n") }
  /* kill -9: its socket closes (presence: no responders); its sent bytes may still land */
  :: atomic { !crashed[0] && crashes == 0 ->
       crashes++; crashed[0] = 1; paused[0] = 0; acrash = leading(0);
       printf("kill -9 i0\n") }
  :: atomic { !crashed[1] && crashes == 0 ->
       crashes++; crashed[1] = 1; paused[1] = 0; acrash = leading(1);
       printf("kill -9 i1\n") }
  od
}

init {
  byte e = 0;
  atomic {
    do :: e <= MAXE -> vwriter[e] = NONE; e++ :: else -> break od;
    /* instance 0 leads in epoch 1 (its marker written, drained); 1 is its standby */
    role[0] = ACTIVE; epoch[0] = 1; mseen[0] = 1; dl[0] = 1; revok[0] = 1;
    role[1] = STANDBY;
    vh[0] = NONE; vh[1] = NONE;
    run Instance(0); run Instance(1); run Renewer(0); run Renewer(1); run World()
  }
}

ltl safety1 { [] !split }
ltl safety2 { [] !wa_bad }
ltl safety3 { [] !dup }
ltl liveness { [] (acrash -> <> live_leader) }
ltl witness_two_active { [] !two_active }
ltl witness_stale_write { [] !stale_write }
ltl witness_wrong_presence { [] !(wrong_presence && two_active) }
