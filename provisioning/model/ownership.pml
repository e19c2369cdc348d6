/*
 * The ownership protocol of provisioning/protocol.go, as spin checks it.
 *
 * One server. Job A (owner 1) creates database NAME, then renames it to
 * NAME2, then drops it; each of the three jobs has two deliveries that run
 * at once or one after the other, and any delivery may die between any two
 * of its statements (a crash is a delivery that stops; the other delivery
 * is the redelivery). Job B (owner 2) wants NAME too. A foreign actor
 * creates and drops databases under NAME and NAME2 at any moment, never
 * under a scratch name (the system's own namespace, ScratchPrefix).
 *
 * Each step below is one SQL statement (or one transaction) of the
 * PostgreSQL engine, atomic as the server makes it; between two steps
 * anything else may run. Steps stand for:
 *   reserve          Engine.Reserve (postgres/reservations.go)
 *   read_res, ident  ReservationStore.Reservation, .Identity
 *   mark_making      Scratcher.MarkMaking
 *   copy             the CREATE DATABASE of MakePublished's make (engine.go create)
 *   publish          Publisher.Publish: rename scratch->NAME, made, identity, one tx
 *   drop_scratch     Scratcher.DropScratch
 *   set_state        ReservationStore.SetState
 *   rename_tx        postgres Engine.RenameDatabase's transaction (rename,
 *                    oid check, new name made)
 *   tomb_tx          postgres Engine.DropDatabase's transaction (rename to
 *                    the scratch name, oid check), then drop_scratch
 *   record, rename_scratch  MakeStaged's SetState(making, identity) and
 *                    Stager.RenameScratch (sqlserver/engine.go)
 *   trash_tx         postgres Engine.TrashDatabase's transaction (close
 *                    logins, end sessions, rename to the trash name, oid
 *                    check, reservation moved there as trashed)
 *   take             purgeOne's DELETE of the trashed row, FOR UPDATE SKIP
 *                    LOCKED, held until the purge commits or dies
 *   restore_tx       postgres Engine.Restore's transaction
 * and the proctypes stand for provisioning.MakePublished (Create),
 * provisioning.MakeStaged (CreateStaged), provisioning.Move (Rename),
 * provisioning.Drop (Drop), a delete with a retention (TrashDel), a
 * replica's purgeOne and dropTrashed (Purger) and Restore.
 *
 * What is checked: every database the system adopts, marks made, renames
 * or drops is one the system itself copied (sysmade), and a database the
 * foreign actor made is never renamed or dropped by the system
 * (assertions, safety). For each SCENARIO (see init),
 * `spin -a -DSCENARIO=n ownership.pml && cc -DSAFETY pan.c && ./pan` must
 * report no errors; with -DADOPT_ON_DUPLICATE (the bug the publish
 * protocol removed: a database under a making name taken for the
 * system's) scenarios 1 and 4 must give a counterexample, and with
 * -DDROP_BY_NAME (a drop that checks the identity and then drops by name,
 * two statements) scenario 3 must, and with -DRECORD_OVER_PUBLISHED (a
 * staged create that records its copy over one another delivery already
 * published) scenario 4 must, as the system disowns its own copy. In
 * scenario 5 (trash and purge) no purge drops a database other than the
 * system's, or the system's after a restore, at most one purge drops it,
 * and no restore renames over a name in use; with -DPURGE_BY_NAME (a
 * purge that checks the identity under the trash name and then drops by
 * name) or -DPURGE_WITHOUT_LOCK (the row read without FOR UPDATE SKIP
 * LOCKED: two replicas both purge it) it must give a counterexample, and
 * with -DRESTORE_DURING_DELETE (a restore before every delivery of the
 * delete has ended, which instancemgr trash restore prevents by waiting
 * for the status Deleted: docs/reliability.md) too.
 * provisioning/model_test.go runs them.
 */

#define NONE     0
#define RESERVED 1
#define MAKING   2
#define MADE     3

#define MAXID 10

/* Databases: the identity under each name, 0 for none. */
byte nm = 0;     /* NAME */
byte nm2 = 0;    /* NAME2 */
byte scr[3];     /* scratch copy of NAME's reservation, by owner */
byte scr2 = 0;   /* scratch name of NAME2's reservation (owner 1) */
bool sysmade[MAXID];
byte nextid = 1;

/* Reservations of NAME and NAME2. */
byte r_owner = 0; byte r_state = NONE; byte r_ident = 0;
byte r2_owner = 0; byte r2_state = NONE; byte r2_ident = 0;

/* Foreign databases made, and a limit to keep the model finite. */
byte foreign_made = 0;

#define CRASH if :: true -> goto done :: true -> skip fi

inline newdb(v, sys) {
	v = nextid; sysmade[nextid] = sys; nextid++
}

/* MakePublished for owner o. */
proctype Create(byte o) {
	byte st, id, cur;
	/* reserve */
	atomic {
		if
		:: r_owner == NONE -> r_owner = o; r_state = RESERVED; r_ident = 0
		:: r_owner == o -> skip
		:: else -> goto done /* ErrConflict naming the holder */
		fi
	}
	CRASH;
	/* toCreate: read_res, then ident */
	atomic {
		if
		:: r_owner != o -> goto done
		:: else -> st = r_state; id = r_ident
		fi
	}
	cur = nm;
	if
	:: cur != 0 ->
		/* existing() */
#ifdef ADOPT_ON_DUPLICATE
		if
		:: st != RESERVED -> assert(sysmade[cur]); goto done
		:: else -> goto done
		fi;
#endif
		if
		:: st == MADE && id == cur -> assert(sysmade[cur]) /* adopted: Same */
		:: st == MAKING -> atomic { scr[o] = 0 } /* conflict; drop_scratch */
		:: else -> skip /* conflict */
		fi;
		goto done
	:: else
	fi;
	CRASH;
	/* mark_making */
	atomic { if :: r_owner == o && r_state == RESERVED -> r_state = MAKING :: else fi }
	CRASH;
	/* copy: CREATE DATABASE scratch (created=false when it is there) */
	atomic { if :: scr[o] == 0 && nextid < MAXID -> newdb(scr[o], true) :: else fi }
	CRASH;
	/* publish: one transaction */
	atomic {
		if
		:: scr[o] == 0 -> goto meanwhile            /* ErrScratchGone */
		:: nm != 0 -> goto meanwhile                /* ErrConflict: duplicate */
		:: r_owner != o -> goto done                /* reservation gone */
		:: else ->
			assert(sysmade[scr[o]]);
			nm = scr[o]; scr[o] = 0; r_state = MADE; r_ident = nm;
			goto done
		fi
	}
meanwhile:
	/* publishedMeanwhile: made, and the database under NAME is the recorded one */
	atomic {
		if
		:: r_owner == o && r_state == MADE && r_ident != 0 && nm == r_ident ->
			assert(sysmade[nm])
		:: else -> skip
		fi
	}
	CRASH;
	atomic { scr[o] = 0 } /* drop_scratch (surplus or unpublishable copy) */
done:
	skip
}

/* MakeStaged for owner o (SQL Server): the copy's identity is recorded
 * while making, then the copy is renamed (a statement of its own), then
 * the name is marked made. */
proctype CreateStaged(byte o) {
	byte st, id, cur, copyid;
	atomic {
		if
		:: r_owner == NONE -> r_owner = o; r_state = RESERVED; r_ident = 0
		:: r_owner == o -> skip
		:: else -> goto done
		fi
	}
	CRASH;
	atomic {
		if
		:: r_owner != o -> goto done
		:: else -> st = r_state; id = r_ident
		fi
	}
	cur = nm;
	if
	:: cur != 0 ->
#ifdef ADOPT_ON_DUPLICATE
		if
		:: st != RESERVED -> assert(sysmade[cur]); goto done
		:: else -> goto done
		fi;
#endif
		if
		:: st == MAKING && id != 0 && id == cur ->
			assert(sysmade[cur]); /* renamed by a dead delivery: mark made */
			atomic { if :: r_owner == o -> r_state = MADE :: else fi }
		:: st == MADE && id == cur -> assert(sysmade[cur]) /* adopted */
		:: st == MAKING -> atomic { scr[o] = 0 }
		:: else -> skip
		fi;
		goto done
	:: else
	fi;
	CRASH;
	atomic { if :: r_owner == o && r_state == RESERVED -> r_state = MAKING :: else fi }
	CRASH;
	atomic { if :: scr[o] == 0 && nextid < MAXID -> newdb(scr[o], true) :: else fi }
	CRASH;
	copyid = scr[o];
	if
	:: copyid == 0 -> goto meanwhile
	:: else
	fi;
#ifndef RECORD_OVER_PUBLISHED
	/* Holds: another delivery renamed its copy under NAME meanwhile; this
	 * copy is surplus, and recording it would disown the published one. */
	atomic {
		if
		:: r_owner == o && r_ident != 0 && nm == r_ident -> assert(sysmade[nm]); r_state = MADE;
			if :: scr[o] != 0 && scr[o] != r_ident -> scr[o] = 0 :: else fi;
			goto done
		:: else
		fi
	}
	CRASH;
#endif
	/* record the copy's identity, still making */
	atomic { if :: r_owner == o -> r_state = MAKING; r_ident = copyid :: else -> goto done fi }
	CRASH;
	/* rename the copy to NAME */
	atomic {
		if
		:: scr[o] == 0 || nm != 0 -> goto meanwhile
		:: else -> assert(sysmade[scr[o]]); nm = scr[o]; scr[o] = 0
		fi
	}
	CRASH;
	atomic { if :: r_owner == o -> r_state = MADE :: else fi }
	goto done;
meanwhile:
	/* another delivery renamed a copy first: the system's only when the
	 * database under NAME is the copy recorded last */
	atomic {
		if
		:: r_owner == o && r_ident != 0 && nm == r_ident -> assert(sysmade[nm]); r_state = MADE
		:: else -> skip
		fi
	}
	CRASH;
	atomic { if :: scr[o] != 0 && scr[o] != r_ident -> scr[o] = 0 :: else fi }
done:
	skip
}

/* Move NAME -> NAME2 for owner 1; its rename is one transaction. */
proctype Rename() {
	byte st, id, st2, id2, cur, cur2;
	atomic {
		if
		:: r2_owner == NONE -> r2_owner = 1; r2_state = RESERVED; r2_ident = 0
		:: r2_owner == 1 -> skip
		:: else -> goto done
		fi
	}
	CRASH;
	/* MadeBy(old), OwnedBy(new) */
	atomic { if :: r_owner != 1 || r_state != MADE -> goto done :: else -> st = r_state; id = r_ident fi }
	atomic { if :: r2_owner != 1 -> goto done :: else -> st2 = r2_state; id2 = r2_ident fi }
	cur = nm;
	cur2 = nm2;
	if
	:: cur != 0 && cur2 == 0 ->
		if
		:: id == 0 || id != cur -> goto done /* Same: conflict */
		:: else
		fi;
		CRASH;
		/* set_state: NAME2 making, expected identity */
		atomic { if :: r2_owner == 1 -> r2_state = MAKING; r2_ident = cur :: else -> goto done fi }
		CRASH;
		/* rename_tx: ALTER DATABASE RENAME, oid check, made */
		atomic {
			if
			:: nm == 0 || nm2 != 0 -> skip /* the statement fails, nothing changes */
			:: nm != r2_ident -> skip      /* oid differs: rolled back */
			:: else ->
				assert(sysmade[nm]);
				nm2 = nm; nm = 0; r2_state = MADE
			fi
		}
	:: cur == 0 && cur2 != 0 && st2 != RESERVED && id2 != 0 && id2 == cur2 ->
		/* done by an earlier delivery */
		assert(sysmade[cur2]);
		atomic { if :: r2_owner == 1 -> r2_state = MADE :: else fi }
	:: else -> skip /* conflict */
	fi;
done:
	skip
}

/* Drop NAME2 for owner 1: move it to its scratch name checking its
 * identity in one transaction, then drop the scratch copy. */
proctype Drop() {
	byte st, id, cur;
	atomic { if :: r2_owner != 1 -> goto done :: else -> st = r2_state; id = r2_ident fi }
	cur = nm2;
	if
	:: cur == 0 ->
		/* gone; a tomb left by a dead delivery holds the recorded identity */
		atomic { if :: scr2 != 0 && scr2 == id -> assert(sysmade[scr2]); scr2 = 0 :: else fi }
		goto done
	:: else
	fi;
	if
	:: st != MADE || id == 0 || id != cur -> goto done /* MadeBy, Same */
	:: else
	fi;
	CRASH;
#ifdef DROP_BY_NAME
	/* DROP DATABASE NAME2, after the check above, whatever is there now */
	atomic { assert(nm2 == 0 || sysmade[nm2]); nm2 = 0 }
	goto done;
#endif
	/* tomb_tx */
	atomic {
		if
		:: nm2 != 0 && scr2 == 0 && nm2 == id -> scr2 = nm2; nm2 = 0
		:: else -> goto done /* fails or rolled back: conflict */
		fi
	}
	CRASH;
	/* drop_scratch */
	atomic { assert(scr2 == 0 || sysmade[scr2]); scr2 = 0 }
done:
	skip
}

/* Recoverable deletes (provisioning/trash.go, postgres/trash.go). NAME's
 * database goes to its trash name TR and its reservation row with it, as
 * 'trashed'; a purge moves TR to its scratch name TRS and drops it. */
byte tr = 0;       /* TR */
byte trs = 0;      /* TRS: ScratchName of the trash name, the system's namespace */
bool t_held = false; byte t_ident = 0; /* the trashed row under TR */
byte t_lock = 0;   /* the purger whose transaction holds the row (FOR UPDATE) */
byte dels_done = 0;   /* delete deliveries that have ended */
byte purged = 0;      /* purges that dropped the database and forgot its row */
bool restored = false;

/* One delivery of a delete with a retention: provisioning.Drop's reads,
 * then TrashDatabase's transaction (close, terminate, rename NAME->TR, oid
 * check, reservation moved to TR as trashed). */
proctype TrashDel() {
	byte st, id, cur;
	cur = nm; /* Identity(NAME): gone means an earlier delivery did it */
	if
	:: cur == 0 -> goto done
	:: else
	fi;
	atomic { if :: r_owner != 1 -> goto done :: else -> st = r_state; id = r_ident fi }
	if
	:: st != MADE || id == 0 || id != cur -> goto done /* MadeBy, Same */
	:: else
	fi;
	CRASH;
	atomic {
		if
		:: nm == 0 || tr != 0 -> skip /* the rename fails: nothing is moved */
		:: nm != id -> skip           /* oid differs: rolled back */
		:: r_owner != 1 || r_state != MADE || r_ident != id -> skip /* no row updated: conflict, rolled back */
		:: else ->
			assert(sysmade[nm]);
			tr = nm; nm = 0;
			r_owner = NONE; r_state = NONE; r_ident = 0;
			t_held = true; t_ident = id
		fi
	}
done:
	dels_done++
}

/* The purger crashes: its connections die, the server rolls back its
 * transaction and the row is there again, unlocked. */
#define PCRASH if :: true -> goto crashed :: true -> skip fi

/* One replica's purgeOne of TR's row (after its retention: any time). */
proctype Purger(byte p) {
	byte id, cur, left;
	bool dropped = false;
	/* DELETE ... WHERE database_name = (SELECT ... FOR UPDATE SKIP LOCKED) */
	atomic {
		if
#ifdef PURGE_WITHOUT_LOCK
		:: t_held -> id = t_ident
#else
		:: t_held && t_lock == 0 -> t_lock = p; id = t_ident
#endif
		:: else -> goto done /* nothing due, or another replica holds it */
		fi
	}
	PCRASH;
	/* dropTrashed */
	cur = tr; /* Identity(TR) */
	if
	:: cur == 0 ->
		left = trs; /* Identity(TRS): a purge that died after its rename */
		if
		:: left == 0 -> goto commit
		:: left != id -> goto rollback /* conflict: left alone */
		:: else
		fi;
		PCRASH;
		goto dropscratch
	:: cur != id -> goto rollback /* a database swapped under TR: left alone, row kept */
	:: else
	fi;
	PCRASH;
#ifdef PURGE_BY_NAME
	/* DROP DATABASE TR, after the check above, whatever is there now */
	atomic { assert(tr == 0 || (sysmade[tr] && !restored)); tr = 0 }
	dropped = true;
	goto commit;
#endif
	/* rename TR->TRS, oid check, one transaction */
	atomic {
		if
		:: tr != 0 && trs == 0 && tr == id -> assert(sysmade[tr] && !restored); trs = tr; tr = 0
		:: else -> goto rollback /* fails or rolled back */
		fi
	}
	PCRASH;
dropscratch:
	/* DROP DATABASE IF EXISTS TRS */
	atomic { assert(trs == 0 || (sysmade[trs] && !restored)); trs = 0 }
	dropped = true;
	PCRASH;
commit:
	atomic {
		t_held = false; t_lock = 0;
		if :: dropped -> purged++ :: else fi;
		assert(purged <= 1) /* at most one purge drops it */
	}
	goto done;
rollback:
crashed:
	atomic { if :: t_lock == p -> t_lock = 0 :: else fi }
done:
	skip
}

/* Restore TR as NAME: one transaction that waits out a purge holding the
 * row, renames TR->NAME (fails when a database has NAME), checks the oid,
 * opens logins and moves the row to NAME as made (fails when a reservation
 * holds NAME). The operator restores once the delete job has ended: a
 * redelivery of the delete after a restore would move it to trash again
 * (docs/reliability.md, windows that remain). */
proctype Restore() {
#ifndef RESTORE_DURING_DELETE
	dels_done == 2;
#endif
	atomic {
		t_lock == 0;
		if
		:: !t_held -> skip                      /* not in trash */
		:: tr == 0 || nm != 0 -> skip           /* the rename fails */
		:: tr != t_ident -> skip                /* oid differs: rolled back */
		:: r_owner != NONE -> skip              /* NAME is reserved: rolled back */
		:: else ->
			assert(nm == 0 && r_owner == NONE && sysmade[tr]);
			nm = tr; tr = 0;
			r_owner = 1; r_state = MADE; r_ident = nm;
			t_held = false; t_ident = 0;
			restored = true
		fi
	}
}

/* The foreign actor of the trash scenario: databases under NAME and under
 * the trash name (a swapped trash database), and another job reserving
 * NAME once it is free (only after the deletes end, to keep the state
 * space small: a delivery that finds NAME's reservation not its own ends
 * alike whoever holds it). */
proctype ForeignTrash() {
	do
	:: atomic { nm == 0 && foreign_made < 2 && nextid < MAXID -> newdb(nm, false); foreign_made++ }
	:: atomic { tr == 0 && foreign_made < 2 && nextid < MAXID -> newdb(tr, false); foreign_made++ }
	:: atomic { nm != 0 -> nm = 0 }
	:: atomic { tr != 0 -> tr = 0 }
	:: atomic { dels_done == 2 && r_owner == NONE -> r_owner = 2; r_state = RESERVED }
	:: break
	od
}

/* When nothing can move any more, a database the system copied that sits
 * under NAME is the one NAME's reservation records: the system never
 * disowns its own copy (a later delivery would take it for someone
 * else's). */
proctype Recognised() {
	timeout -> assert(nm == 0 || !sysmade[nm] || r_ident == nm)
}

proctype Foreign() {
	do
	:: atomic { nm == 0 && foreign_made < 2 && nextid < MAXID -> newdb(nm, false); foreign_made++ }
	:: atomic { nm2 == 0 && foreign_made < 2 && nextid < MAXID -> newdb(nm2, false); foreign_made++ }
	:: atomic { nm != 0 -> nm = 0 }   /* dropped by hand, whoever made it */
	:: atomic { nm2 != 0 -> nm2 = 0 }
	:: break
	od
}

/* Five scenarios, each checked on its own to keep the state space small:
 * the create (two deliveries of A, one of B wanting the same name), the
 * rename of A's database (two deliveries), its drop (two deliveries), the
 * staged create of SQL Server (as the first), and the delete with a
 * retention of A's database under NAME (two deliveries) with two replicas
 * purging it and a restore, each with the foreign actor. -DSCENARIO=1 to
 * 5. */
#ifndef SCENARIO
#define SCENARIO 1
#endif

init {
	atomic {
#if SCENARIO == 1
		run Create(1); run Create(1); run Create(2);
		run Recognised();
#endif
#if SCENARIO == 2
		newdb(nm, true); r_owner = 1; r_state = MADE; r_ident = nm;
		run Rename(); run Rename();
#endif
#if SCENARIO == 3
		newdb(nm2, true); r2_owner = 1; r2_state = MADE; r2_ident = nm2;
		run Drop(); run Drop();
#endif
#if SCENARIO == 4
		run CreateStaged(1); run CreateStaged(1); run CreateStaged(2);
		run Recognised();
#endif
#if SCENARIO == 5
		newdb(nm, true); r_owner = 1; r_state = MADE; r_ident = nm;
		run TrashDel(); run TrashDel();
		run Purger(1); run Purger(2);
		run Restore();
		run ForeignTrash()
#else
		run Foreign()
#endif
	}
}
